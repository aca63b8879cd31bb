"""Evaluation that no model of this project decides: teacher 50-step Euler (CFG), teacher 4-step Euler
(CFG) and the pi-Flow student at its default NFE, on the same prompts and seeds, in one table.

Prompts ("specific"): every base emoji of the reference style, named as emoji-datasource spells it,
lower-cased ("red apple", "egypt flag"); one image each (seed BASE_SEED + i).
  rank       the rank of the prompt's own emoji among all base emoji by distance in 8x8 pooled pixels
             (alpha over white) to the image: top-10 share, top-1 share, median
  control    the same rank against another prompt's emoji (a fixed derangement): what chance and a
             generic "average emoji" score, the floor the real rank must clear
  FD, KID, precision/recall   the specific images against the reference images, in the three spaces of
             models/eval/features.py (8x8 pooled pixels, pixel PCA, a seeded random CNN)
  diversity  mean pairwise distance between SEEDS images of one prompt, over DIVERSITY_PROMPTS prompts,
             in each space; reported with its ratio to teacher-50
Free prompts: a grid per method (rows = FREE_PROMPTS, columns = seeds).

  .toolchain/torch-py/bin/python -m models.eval.independent --model models/piflow-emoji \\
      [--api http://127.0.0.1:8787 --api-key KEY]   # student images through the public API as well
      [--limit 256]                                 # a random subset of the prompts (quick runs)

--api adds a row "student (API)": the same prompts and seeds through POST /v1/generations (the product
path), and the pixel agreement between the API's images and onnxruntime's here.
Writes <out>/metrics.json, table.md, free-<method>.png, specific-<method>.png (out defaults to
models/eval/results/independent-<model id>).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from models.eval.features import FeatureSpaces, pooled_pixels
from models.eval.generate import ApiClient, OnnxModel
from models.eval.metrics import (
    derangement,
    frechet_distance,
    kid,
    per_prompt_diversity,
    precision_recall,
    rank_summary,
    target_ranks,
)
from models.eval.samples import grid_uint8
from models.v2.sources import base_images

RESULTS = os.path.join(os.path.dirname(__file__), "results")
BASE_SEED = 1000
DIVERSITY_SEED = 5000
DIVERSITY_PROMPTS = 64
SEEDS = 4
FREE_PROMPTS = [
    "happy dog", "blue car", "red heart", "green frog", "smiling cat", "pizza slice", "birthday cake",
    "rain cloud", "yellow star", "angry face", "fire truck", "ice cream", "sleeping baby", "rocket ship",
    "purple flower", "soccer ball",
]


class Evaluation:
    """Prompts, references and feature spaces shared by every method."""

    def __init__(self, style: str, size: int, limit: int | None, eval_size: int,
                 diversity_prompts: int = DIVERSITY_PROMPTS, free_prompts: int = len(FREE_PROMPTS)):
        entries, self.reference = base_images(style, size)
        rng = np.random.default_rng(0)
        n = len(entries)
        self.index = np.sort(rng.choice(n, size=limit, replace=False)) if limit else np.arange(n)
        self.prompts = [entries[i].prompt for i in self.index]
        self.seeds = [BASE_SEED + int(i) for i in self.index]
        self.control = derangement(n, np.random.default_rng(1))[self.index]
        div = np.sort(rng.choice(n, size=min(diversity_prompts, n), replace=False))
        self.div_prompts = [entries[i].prompt for i in div for _ in range(SEEDS)]
        self.div_seeds = [DIVERSITY_SEED + SEEDS * int(i) + s for i in div for s in range(SEEDS)]
        self.free = FREE_PROMPTS[:free_prompts]
        self.free_prompts = [p for p in self.free for _ in range(SEEDS)]
        self.free_seeds = [7 + s for _ in self.free for s in range(SEEDS)]
        self.spaces = FeatureSpaces(self.reference, eval_size=eval_size)
        self.ref_features = self.spaces(self.reference)
        self.ref_pooled = pooled_pixels(self.reference)

    def score(self, specific: np.ndarray, diverse: np.ndarray) -> dict:
        pooled = pooled_pixels(specific)
        out = {"rank": rank_summary(target_ranks(pooled, self.ref_pooled, self.index)),
               "control": rank_summary(target_ranks(pooled, self.ref_pooled, self.control))}
        feats, div_feats = self.spaces(specific), self.spaces(diverse)
        for name in self.spaces.names:
            precision, recall = precision_recall(self.ref_features[name], feats[name])
            out[name] = {
                "fd": frechet_distance(feats[name], self.ref_features[name]),
                "kid_x1000": 1000.0 * kid(feats[name], self.ref_features[name]),
                "precision": precision, "recall": recall,
                "diversity": per_prompt_diversity(div_feats[name], len(div_feats[name]) // SEEDS, SEEDS),
            }
        return out


def run_method(ev: Evaluation, sample) -> tuple[dict, dict[str, np.ndarray]]:
    """sample(prompts, seeds) -> uint8 images; returns timing and the three image sets."""
    t0 = time.time()
    specific = sample(ev.prompts, ev.seeds)
    ms = 1000.0 * (time.time() - t0) / len(ev.prompts)
    return {"ms_per_image": ms}, {"specific": specific, "diverse": sample(ev.div_prompts, ev.div_seeds),
                                  "free": sample(ev.free_prompts, ev.free_seeds)}


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max_levels": int(d.max()), "mean_levels": float(d.mean()), "identical_share": float((d == 0).mean())}


def _with_ratio(m: dict, base: dict | None, key: str) -> str:
    """"12.3 (1.05×)": the value and its ratio to teacher-50's (none for teacher-50 itself)."""
    return f"{m[key]:.3g}" + (f" ({m[key] / base[key]:.2f}×)" if base else "")


def format_table(results: dict, spaces: tuple[str, ...], base_name: str = "teacher-50") -> list[str]:
    """Markdown rows; ratios against the row base_name."""
    base = results.get(base_name)
    head = ["method", "top-10 ↑", "control top-10", "median rank ↓"]
    for s in spaces:
        head += [f"{s} FD ↓", f"{s} KID×1000 ↓", f"{s} P / R", f"{s} div."]
    head.append("ms/image")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [name, f"{100 * r['rank']['top10']:.1f} %", f"{100 * r['control']['top10']:.1f} %",
                 f"{r['rank']['median']:.0f}"]
        for s in spaces:
            m, b = r[s], (base[s] if base and name != base_name else None)
            cells += [_with_ratio(m, b, "fd"), _with_ratio(m, b, "kid_x1000"),
                      f"{m['precision']:.2f} / {m['recall']:.2f}", _with_ratio(m, b, "diversity")]
        cells.append(f"{r['ms_per_image']:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def write_results(out_dir: str, meta: dict, results: dict, table: list[str]) -> dict:
    """metrics.json and table.md in out_dir; prints the table; returns {"meta", "results"}."""
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    with open(os.path.join(out_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))
    return {"meta": meta, "results": results}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join("models", "piflow-emoji"))
    p.add_argument("--style", default="noto", help="reference art (models/v2/sources.py)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--eval-size", type=int, default=32, help="pixels of the PCA and CNN spaces")
    p.add_argument("--diversity-prompts", type=int, default=DIVERSITY_PROMPTS)
    p.add_argument("--free-prompts", type=int, default=len(FREE_PROMPTS), help="the first N of FREE_PROMPTS")
    p.add_argument("--api", default=None, help="base URL of a running piflow API")
    p.add_argument("--api-key", default=os.environ.get("PIFLOW_KEY"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = OnnxModel(a.model, threads=a.threads)
    size = model.shape[1]
    out_dir = a.out or os.path.join(RESULTS, f"independent-{model.manifest['id']}")
    os.makedirs(out_dir, exist_ok=True)
    ev = Evaluation(a.style, size, a.limit, a.eval_size, a.diversity_prompts, a.free_prompts)

    methods = {
        "teacher-50": lambda pr, sd: model.teacher(pr, sd, 50),
        "teacher-4": lambda pr, sd: model.teacher(pr, sd, 4),
        f"student {model.default_nfe}-NFE": model.student,
    }
    if a.api:
        client = ApiClient(a.api, a.api_key, model.manifest["id"])
        methods[f"student {model.default_nfe}-NFE (API)"] = lambda pr, sd: client.images(pr, sd, size)
    results, images = {}, {}
    for name, sample in methods.items():
        timing, images[name] = run_method(ev, sample)
        results[name] = {**ev.score(images[name]["specific"], images[name]["diverse"]), **timing}
        slug = name.split(" (")[0].replace(" ", "-") + ("-api" if "(API)" in name else "")
        grid_uint8(images[name]["free"], len(ev.free)).save(os.path.join(out_dir, f"free-{slug}.png"))
        shown = min(64, len(ev.prompts)) // 8 * 8  # the first prompts, 8 per row
        if shown:
            grid_uint8(images[name]["specific"][:shown], shown // 8).save(os.path.join(out_dir, f"specific-{slug}.png"))
        print(name, json.dumps(results[name]), flush=True)
    meta = {
        "model": model.manifest["id"], "training": model.manifest.get("training", {}), "style": a.style,
        "prompts": len(ev.prompts), "references": len(ev.reference), "diversity_prompts": len(ev.div_prompts) // SEEDS,
        "seeds": SEEDS, "eval_size": a.eval_size, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if a.api:
        local, api = (images[n] for n in list(methods)[2:4])
        meta["api_vs_onnxruntime"] = {k: pixel_agreement(local[k], api[k]) for k in ("specific", "free")}
    table = format_table(results, FeatureSpaces.names)
    table += ["", f"{meta['prompts']} specific prompts (rank among {meta['references']} base emoji), diversity over "
              f"{meta['diversity_prompts']} prompts × {SEEDS} seeds; model {meta['model']}; {meta['date']}."]
    return write_results(out_dir, meta, results, table)


if __name__ == "__main__":
    main()
