"""The v2 training set: Noto + Twemoji + Fluent Emoji Flat at 64 px (native), with captions.

  .toolchain/torch-py/bin/python -m models.v2.prepare [--out models/data/v2] [--size 64] [--limit N]

Images: every base emoji and skin-tone variant with art in a style, RGB on white (models/v2/sources.py).
Weights: each style weighs the same in all; inside a style, all skin-tone variants of one emoji together
weigh VARIANT_GROUP_WEIGHT of its base drawing (they are recolourings: with full weight people would be
60 % of the data).
Captions (VARIANTS per image, drawn once here so their sentence embeddings can be computed once):
  name       the CLDR name from emojibase ("flag: Egypt", "thumbs up: medium-dark skin tone") or
             emoji-datasource's name lower-cased ("egypt flag"; skin-tone variants add the tone's
             name), one of the two per caption; the first caption of every image is a plain name
  extras     each emojibase tag / short name / subcategory joins with p = EXTRA_WORD_P (at most MAX_EXTRAS)
  style      Twemoji: one of STYLE_WORDS["twemoji"], Fluent: one of STYLE_WORDS["fluent"], before or after;
             Noto: none, or "noto" with p = NOTO_WORD_P (no style word means Noto)
Empty captions for classifier-free guidance are drawn by the trainer, not stored.

Writes images<size>.npz (images uint8 (N,S,S,3), weights float32 (N,)), items.json (per image: style,
unified, name, prompt, category, tone) and captions.json (per image: VARIANTS strings).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from models.recipe.prepare import TONES, VARIANT_GROUP_WEIGHT, _emojibase_index, _strip_fe0f
from models.v2.sources import ROOT, EmojiEntry, FluentIcons, emoji_entries, load_sheet, sheet_cells

STYLES = ("noto", "twemoji", "fluent")
STYLE_WORDS = {"noto": ("noto",), "twemoji": ("twemoji", "twemoji style", "twitter style"),
               "fluent": ("fluent", "fluent style", "fluent emoji")}
NOTO_WORD_P = 0.25
EXTRA_WORD_P = 0.25
MAX_EXTRAS = 4
VARIANTS = 8
DATA_DIR = os.path.join(ROOT, "models", "data", "v2")


def tone_name(tone_codes: str) -> str:
    """"1F3FB-1F3FD" -> "light skin tone, medium skin tone"."""
    return ", ".join(TONES[t] for t in tone_codes.upper().split("-") if t in TONES)


def describe(entry: EmojiEntry, emojibase: dict, tone: str | None, unified: str) -> dict:
    """The names and extra words of one image (tone: the skin-tone code points, or None for the base;
    unified: the image's own code points)."""
    eb = emojibase.get(_strip_fe0f(entry.unified)) or emojibase.get(_strip_fe0f(entry.non_qualified or "")) or {}
    cldr = eb.get("label")
    datasource = entry.prompt
    if tone:
        skins = {_strip_fe0f(s["hexcode"]): s.get("label") for s in eb.get("skins", [])}
        cldr = skins.get(_strip_fe0f(unified)) or (f"{cldr}: {tone_name(tone)}" if cldr else None)
        datasource = f"{datasource} {tone_name(tone)}"
    names = [n for n in dict.fromkeys([cldr, datasource]) if n]
    extras = [s.replace("_", " ") for s in entry.short_names] + [entry.subcategory.replace("-", " ")]
    extras += eb.get("tags", [])
    extras = sorted({x for x in extras if x and x not in names})
    return {"names": names, "extras": extras}


def captions_for(desc: dict, style: str, rng: np.random.Generator) -> list[str]:
    out = []
    for v in range(VARIANTS):
        name = desc["names"][0] if v == 0 else desc["names"][rng.integers(len(desc["names"]))]
        parts = [name]
        if v > 0:
            extras = [x for x in rng.permutation(desc["extras"]) if rng.random() < EXTRA_WORD_P]
            parts += list(extras[:MAX_EXTRAS])
        text = ", ".join(parts) if rng.random() < 0.5 else " ".join(parts)
        if style == "noto":
            word = "noto" if rng.random() < NOTO_WORD_P and v > 0 else None
        else:
            word = STYLE_WORDS[style][rng.integers(len(STYLE_WORDS[style]))]
        if word:
            text = f"{word} {text}" if rng.random() < 0.5 else f"{text}, {word}"
        out.append(text)
    return out


def style_images(style: str, size: int, limit: int | None):
    """(items, images) of one style: base emoji then their skin-tone variants, as separate items."""
    entries = emoji_entries("noto" if style == "fluent" else style)[:limit]
    items, cells, rendered = [], [], []
    fluent = FluentIcons() if style == "fluent" else None
    for e in entries:
        for tone, unified, cell in ((None, e.unified, e.sheet), *e.skin):
            if fluent:
                icon = fluent.name_of(unified)
                if icon is None:
                    continue
                rendered.append(fluent.render(icon, size))
            else:
                cells.append(cell)
            items.append((e, tone, unified))
    images = np.stack(rendered) if fluent else sheet_cells(load_sheet(style, size), cells, size)
    return items, images


def prepare(out_dir: str, size: int = 64, limit: int | None = None, seed: int = 0) -> dict:
    emojibase = _emojibase_index()
    rng = np.random.default_rng(seed)
    all_images, weights, items, captions, counts = [], [], [], [], {}
    for style in STYLES:
        style_items, images = style_images(style, size, limit)
        group = {}
        for e, tone, _ in style_items:
            group[e.unified] = group.get(e.unified, 0) + (tone is not None)
        w = np.asarray([1.0 if tone is None else VARIANT_GROUP_WEIGHT / group[e.unified] for e, tone, _ in style_items])
        all_images.append(images)
        weights.append(w / w.sum())  # every style weighs 1 in all
        for e, tone, unified in style_items:
            desc = describe(e, emojibase, tone, unified)
            items.append({"style": style, "unified": unified, "name": e.name, "prompt": e.prompt,
                          "category": e.category, "tone": tone})
            captions.append(captions_for(desc, style, rng))
        counts[style] = len(style_items)
    os.makedirs(out_dir, exist_ok=True)
    np.savez_compressed(os.path.join(out_dir, f"images{size}.npz"), images=np.concatenate(all_images),
                        weights=np.concatenate(weights).astype(np.float32))
    for name, obj in (("items.json", items), ("captions.json", captions)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
    return {"images": len(items), "per_style": counts, "size": size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DATA_DIR)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="first N base emoji of each style (tests)")
    a = p.parse_args()
    t0 = time.time()
    info = prepare(a.out, a.size, a.limit)
    print(json.dumps({**info, "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
