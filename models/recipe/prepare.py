"""Turn emoji-datasource-google sprite sheets + emojibase tags into a training set.

Output (in --out, default models/data/):
  emoji<size>.npz   images uint8 (N,H,W,3) composited on white, weights float32 (N,)
  captions.json     per image: {"name": str, "extra": [str, ...]}
and the tokenizer vocabulary (--tokenizer, default models/piflow-emoji/tokenizer.json).

Sheet layout (emoji-datasource): a cell is size+2 px with a 1 px transparent border,
at x = sheet_x*(size+2)+1, y likewise.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image

from .tokenizer import build_spec, words

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATASOURCE = os.path.join(ROOT, "node_modules", "emoji-datasource-google")
EMOJIBASE = os.path.join(ROOT, "node_modules", "emojibase-data", "en", "data.json")

TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium dark skin tone",
    "1F3FF": "dark skin tone",
}
# All skin-tone variants of one emoji together weigh this much relative to the base drawing:
# they are recolourings, and with full weight people would be 60% of the data.
VARIANT_GROUP_WEIGHT = 0.5
MAX_LENGTH = 16


def _strip_fe0f(code: str) -> str:
    return "-".join(p for p in code.upper().split("-") if p != "FE0F")


def _emojibase_index() -> dict[str, dict]:
    with open(EMOJIBASE, encoding="utf-8") as f:
        data = json.load(f)
    return {_strip_fe0f(e["hexcode"]): e for e in data}


def composite_on_white(rgba_u8: np.ndarray) -> np.ndarray:
    """uint8 RGBA (..., 4) -> uint8 RGB (..., 3), alpha over white."""
    rgba = rgba_u8.astype(np.float32) / 255.0
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha + (1.0 - alpha)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _cell(sheet: np.ndarray, sx: int, sy: int, size: int) -> np.ndarray:
    x, y = sx * (size + 2) + 1, sy * (size + 2) + 1
    return composite_on_white(sheet[y : y + size, x : x + size])


def prepare(out_dir: str, tokenizer_path: str, size: int = 32, limit: int | None = None) -> dict:
    with open(os.path.join(DATASOURCE, "emoji.json"), encoding="utf-8") as f:
        emoji = json.load(f)
    emoji = sorted(emoji, key=lambda e: e["sort_order"])
    if limit is not None:
        emoji = emoji[:limit]
    sheet = np.asarray(
        Image.open(os.path.join(DATASOURCE, "img", "google", "sheets-clean", f"{size}.png")).convert(
            "RGBA"
        )
    )
    base_index = _emojibase_index()
    images, weights, captions, vocab_words = [], [], [], []
    for e in emoji:
        if not e.get("has_img_google"):
            continue
        eb = base_index.get(_strip_fe0f(e["unified"])) or base_index.get(
            _strip_fe0f(e.get("non_qualified") or "")
        )
        name = (eb or {}).get("label") or e["name"].lower()
        extra = [s.replace("_", " ") for s in e.get("short_names", [])]
        extra += [e["category"], e["subcategory"].replace("-", " ")]
        extra += (eb or {}).get("tags", [])
        extra = sorted(set(x for x in extra if words(x)))
        images.append(_cell(sheet, e["sheet_x"], e["sheet_y"], size))
        weights.append(1.0)
        captions.append({"name": name, "extra": extra, "category": e["category"]})
        vocab_words += words(name) + [w for x in extra for w in words(x)]
        variants = [v for v in (e.get("skin_variations") or {}).items() if v[1].get("has_img_google")]
        for key, v in variants:
            tone = " ".join(TONES.get(k, "") for k in key.split("-"))
            images.append(_cell(sheet, v["sheet_x"], v["sheet_y"], size))
            weights.append(VARIANT_GROUP_WEIGHT / len(variants))
            captions.append({"name": f"{name} {tone}", "extra": extra, "category": e["category"], "variant": True})
            vocab_words += words(tone)
    os.makedirs(out_dir, exist_ok=True)
    np.savez_compressed(
        os.path.join(out_dir, f"emoji{size}.npz"),
        images=np.stack(images),
        weights=np.asarray(weights, dtype=np.float32),
    )
    with open(os.path.join(out_dir, "captions.json"), "w", encoding="utf-8") as f:
        json.dump(captions, f)
    spec = build_spec(vocab_words, MAX_LENGTH)
    os.makedirs(os.path.dirname(os.path.abspath(tokenizer_path)), exist_ok=True)
    with open(tokenizer_path, "w", encoding="utf-8") as f:
        json.dump(spec, f, separators=(",", ":"))
        f.write("\n")
    return {"images": len(images), "vocab": len(spec["vocab"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=os.path.join(ROOT, "models", "data"))
    p.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "piflow-emoji", "tokenizer.json"))
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="first N emoji only (smoke tests)")
    a = p.parse_args()
    print(json.dumps(prepare(a.out, a.tokenizer, a.size, a.limit)))


if __name__ == "__main__":
    main()
