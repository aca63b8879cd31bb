"""pi-ID segment bench (issue 17): the recipe's piid_segment + backward at the v2 shapes, the current
models/recipe/flow.py against the same file at a baseline commit (git show, loaded as a module), timed
interleaved in one process so both see the same load. Called by bench/piid.ts (`npm run bench -- piid`).

The teacher is a fixed linear field (as in the golden piid case), so the figures are the segment code
itself: the detached GM rollout, the teacher-interval averages with their backward, the loss. Each round
draws one segment per sample as distill.py does (train_sample_t, dropout 0.1) and runs it at teacher ratios
1 (the start of distillation), 0.5 and 0 (every step after --decay-steps). Also checks that both compute the
same loss and gradients (max relative difference printed). Wall and process CPU time are both reported:
CPU time is less disturbed by other jobs on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time
import types

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.recipe import flow  # noqa: E402

# The last commit before issue 17's speed-up of flow.py.
BASELINE = "3055c6a"


def load_baseline(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "show", f"{rev}:models/recipe/flow.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("flow_baseline")
    mod.__dict__["__name__"] = "flow_baseline"
    sys.modules["flow_baseline"] = mod  # dataclasses look their module up
    exec(compile(src, f"{rev}:models/recipe/flow.py", "exec"), mod.__dict__)
    return mod


def make_inputs(seed: int, b: int, k: int, c: int, size: int, cfg):
    g = torch.Generator().manual_seed(seed)
    _, raw_src, sigma_src, seg = flow.train_sample_t(torch.rand(b, generator=g), cfg.nfe,
                                                     cfg.final_step_size_scale, cfg.shift, cfg.eps)
    return dict(
        x_src=torch.randn(b, c, size, size, generator=g), raw_src=raw_src, sigma_src=sigma_src, seg=seg,
        means_u=torch.randn(b, k, c, size, size, generator=g) * 0.5,
        logweights=torch.randn(b, k, 1, size, size, generator=g),
        logstds=torch.full((b, 1, 1, 1, 1), -1.0) + 0.1 * torch.randn(b, 1, 1, 1, 1, generator=g),
        student_draws=torch.rand(b, cfg.num_intermediate_states, generator=g),
        teacher_draws=torch.rand(b, cfg.num_intermediate_states - 1, generator=g),
        dropout=torch.rand(b, k, generator=g) < cfg.gm_dropout,
    )


def teacher(x, sigma):
    return 0.9 * x + 0.3 * sigma.reshape(-1, 1, 1, 1) - 0.1


def run_segment(mod, inp, ratio: float, cfg):
    """One distill.py-shaped segment with the given flow module; returns ((wall s, CPU s), loss, grads)."""
    leaves = [inp["means_u"].clone().requires_grad_(), inp["logweights"].clone().requires_grad_(),
              inp["logstds"].clone().requires_grad_()]
    t0, c0 = time.perf_counter(), time.process_time()
    policy = mod.GMPolicy(*leaves, inp["x_src"], inp["sigma_src"], eps=cfg.eps)
    out = mod.piid_segment(teacher, policy, inp["x_src"], inp["raw_src"], inp["sigma_src"], inp["seg"], ratio,
                           cfg, inp["student_draws"], inp["teacher_draws"], inp["dropout"])
    out["loss"].backward()
    return (time.perf_counter() - t0, time.process_time() - c0), out["loss"].detach(), [v.grad for v in leaves]


def rel_diff(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--baseline", default=BASELINE, help="git revision of the old flow.py")
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_REPEATS", 4)))
    p.add_argument("--threads", type=int, default=2, help="as distill.py's --threads default")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--total-substeps", type=int, default=flow.PiidConfig.total_substeps,
                   help="the recipe's default; another value shows what fewer substeps would save")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    old = load_baseline(a.baseline)
    cfg = flow.PiidConfig(total_substeps=a.total_substeps)
    ratios = (1.0, 0.5, 0.0)
    times = {(r, name): [] for r in ratios for name in ("old", "new")}
    worst = 0.0
    run_segment(flow, make_inputs(0, a.batch, a.k, 3, a.size, cfg), 0.5, cfg)  # warm-up
    for rnd in range(a.rounds):
        for r in ratios:
            inp = make_inputs(1000 + rnd, a.batch, a.k, 3, a.size, cfg)
            order = (("old", old), ("new", flow)) if rnd % 2 == 0 else (("new", flow), ("old", old))
            res = {}
            for name, mod in order:
                res[name] = run_segment(mod, inp, r, cfg)
                times[(r, name)].append(res[name][0])
            worst = max([worst, rel_diff(res["new"][1], res["old"][1])]
                        + [rel_diff(gn, go) for gn, go in zip(res["new"][2], res["old"][2])])
    print(f"\npi-ID segment + backward, B={a.batch} K={a.k} C=3 {a.size}x{a.size}, total_substeps "
          f"{cfg.total_substeps}, M={cfg.num_intermediate_states}, {a.threads} threads, torch "
          f"{torch.__version__}; {a.rounds} rounds interleaved, median s; baseline = flow.py at {a.baseline}\n")
    print("| teacher ratio | baseline wall (s) | current wall (s) | speed-up | baseline CPU (s) | current CPU (s) "
          "| speed-up |")
    print("|---|---|---|---|---|---|---|")

    def med(r, name, j):
        return statistics.median(t[j] for t in times[(r, name)])

    for label, rs in [(f"{r:g}", (r,)) for r in ratios] + [("sum", ratios)]:
        cells = []
        for j in (0, 1):  # wall, CPU (CPU time is less disturbed by other jobs on a shared machine)
            o, n = sum(med(r, "old", j) for r in rs), sum(med(r, "new", j) for r in rs)
            cells += [f"{o:.3f}", f"{n:.3f}", f"{o / n:.2f}x"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nmax relative difference of loss and gradients (current vs baseline): {worst:.2e}")


if __name__ == "__main__":
    main()
