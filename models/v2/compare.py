"""Which of two (or more) teacher snapshots follows its prompt better, prompt by prompt: the probe's
specific-emoji rank (models/v2/probe.py) of each on the same prompts and seeds, paired against the first.

  .toolchain/torch-py/bin/python -m models.v2.compare A.pt B.pt [C.pt ...] [--limit 512 --steps 10]

Prints one JSON object: each snapshot's top-10 and median rank, and for each later one (B) paired
figures against A: the mean of log(rank_B / rank_A) with a 95 % bootstrap interval over prompts (below
0: B ranks its prompts' emoji nearer), how many prompts B ranks better / worse, and B's top-10 minus A's
with its interval (A itself computed once). Why paired: two snapshots' top-10 at 256 prompts each carry ±2 % of prompt-sampling noise,
while the per-prompt differences on the same prompts and seeds cancel most of it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from models.eval.features import pooled_pixels
from models.eval.independent import Evaluation
from models.eval.metrics import rank_summary, target_ranks
from models.v2.probe import GUIDANCE, SnapshotTeacher

BOOTSTRAP = 2000


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator, level: float = 0.95) -> list[float]:
    """Percentile interval of the mean of `values` over resampled prompts."""
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))].mean(axis=1)
    return [float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))]


def paired(ranks_a: np.ndarray, ranks_b: np.ndarray, top: int = 10) -> dict:
    """B against A on the same prompts (ranks are 1-based, 1 = the prompt's own emoji is the nearest)."""
    rng = np.random.default_rng(0)
    log_ratio = np.log(ranks_b) - np.log(ranks_a)
    top_gain = (ranks_b <= top).astype(float) - (ranks_a <= top).astype(float)
    return {"mean_log_rank_ratio": float(log_ratio.mean()), "interval": bootstrap_interval(log_ratio, rng),
            "b_better": int((ranks_b < ranks_a).sum()), "b_worse": int((ranks_b > ranks_a).sum()),
            f"top{top}_gain": float(top_gain.mean()), f"top{top}_gain_interval": bootstrap_interval(top_gain, rng)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="teacher snapshot or checkpoint A (the baseline)")
    p.add_argument("others", nargs="+", metavar="B", help="teacher snapshots or checkpoints to pair with A")
    p.add_argument("--limit", type=int, default=512, help="specific prompts (a seeded subset of 1,911)")
    p.add_argument("--steps", type=int, default=10, help="Euler steps (10 ranks like 50 at 38 k: README)")
    p.add_argument("--guidance", type=float, default=GUIDANCE)
    p.add_argument("--style", default="noto")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ev = Evaluation(a.style, 64, a.limit, 32, 1, 1)
    out: dict = {"prompts": len(ev.prompts), "steps": a.steps, "guidance": a.guidance, "snapshots": []}
    ranks = []
    for path in (a.a, *a.others):
        teacher = SnapshotTeacher(path)
        images = teacher.sample(ev.prompts, ev.seeds, a.steps, guidance=a.guidance)
        ranks.append(target_ranks(pooled_pixels(images), ev.ref_pooled, ev.index))
        entry = {"path": path, "step": teacher.step, **rank_summary(ranks[-1])}
        if len(ranks) > 1:
            entry["vs_first"] = paired(ranks[0], ranks[-1])
        out["snapshots"].append(entry)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
