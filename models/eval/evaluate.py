"""Evaluation of the paper's central claims at emoji scale, on the same prompts and seeds:
teacher 50-step Euler (CFG), teacher 4-step Euler (CFG), pi-Flow GM student at 4 NFE.

Metrics (feature space of a small CNN category classifier trained here on the emoji data, since no
Inception weights can be fetched):
  kid      KID x 1000 (unbiased MMD^2, cubic polynomial kernel) between samples and the 1,911 base emoji
  fd       Frechet distance in the same feature space (few samples: compare methods, not absolute values)
  diversity  mean pairwise feature distance between the seeds of one prompt, averaged over prompts
  adherence  fraction of samples whose predicted category is the prompt emoji's category
  ms_per_image  wall time of sampling in PyTorch on this CPU (batch = all samples of one method)

  /usr/bin/python3 -m models.eval.evaluate --teacher T.pt --student S.pt [--prompts 48 --seeds 4]
Writes models/eval/results/metrics.json, table.md and sample grids.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.eval.samples import to_grid
from models.recipe.common import DATA_DIR, MODEL_DIR, ROOT
from models.recipe.distill import cfg_teacher
from models.recipe.export import load_net
from models.recipe.flow import sample_euler, sample_gm
from models.recipe.tokenizer import Tokenizer

RESULTS = os.path.join(os.path.dirname(__file__), "results")
CLASSIFIER = os.path.join(ROOT, "models", "runs", "eval-classifier.pt")


class Classifier(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.GroupNorm(8, 64), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.GroupNorm(8, 128), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(128, classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def load_data():
    arr = np.load(os.path.join(DATA_DIR, "emoji32.npz"))
    x = torch.from_numpy(arr["images"]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with open(os.path.join(DATA_DIR, "captions.json"), encoding="utf-8") as f:
        caps = json.load(f)
    cats = sorted({c["category"] for c in caps})
    y = torch.tensor([cats.index(c["category"]) for c in caps])
    base = torch.tensor([not c.get("variant") for c in caps])
    return x, y, base, caps, cats


def train_classifier(x, y, classes, steps=800, seed=0) -> Classifier:
    torch.manual_seed(seed)
    net = Classifier(classes)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        xb = x[idx]
        # light noise/blur augmentation so generated (slightly noisy) images land in-distribution
        xb = xb + 0.05 * torch.randn(xb.shape, generator=g)
        loss = F.cross_entropy(net(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net


def kid(a: torch.Tensor, b: torch.Tensor) -> float:
    d = a.shape[1]
    k = lambda u, v: (u @ v.T / d + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float((kaa.sum() - kaa.diag().sum()) / (m * (m - 1)) + (kbb.sum() - kbb.diag().sum()) / (n * (n - 1))
                 - 2 * kab.mean())


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    ev = torch.linalg.eigvals(ca @ cb).real.clamp(min=0)
    return float((ma - mb).pow(2).sum() + ca.trace() + cb.trace() - 2 * ev.sqrt().sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--prompts", type=int, default=48)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--shift", type=float, default=3.2)
    p.add_argument("--out", default=RESULTS)
    a = p.parse_args()
    torch.set_num_threads(2)
    final_out, a.out = a.out, os.path.join(ROOT, "models", "runs", "eval-partial")  # git-ignored
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    x, y, base, caps, cats = load_data()
    if os.path.exists(CLASSIFIER):
        clf = Classifier(len(cats))
        clf.load_state_dict(torch.load(CLASSIFIER))
        clf.eval()
    else:
        clf = train_classifier(x, y, len(cats))
        os.makedirs(os.path.dirname(CLASSIFIER), exist_ok=True)
        torch.save(clf.state_dict(), CLASSIFIER)
    with torch.no_grad():
        ref = clf.features(x[base])
        train_acc = float((clf(x[base]).argmax(1) == y[base]).float().mean())

    rng = np.random.default_rng(0)
    base_idx = np.flatnonzero(base.numpy())
    chosen = rng.choice(base_idx, size=a.prompts, replace=False)
    prompts = [caps[i]["name"] for i in chosen for _ in range(a.seeds)]
    labels = torch.tensor([int(y[i]) for i in chosen for _ in range(a.seeds)])
    tok = Tokenizer.load(os.path.join(MODEL_DIR, "tokenizer.json"))
    tokens = torch.tensor([tok.encode(q) for q in prompts])
    noise = torch.randn(len(prompts), 3, 32, 32, generator=torch.Generator().manual_seed(2024))

    teacher, tck = load_net(a.teacher)
    student, sck = load_net(a.student)
    u = cfg_teacher(teacher, tokens, a.guidance)
    methods = {
        "teacher-50 (Euler, CFG)": lambda: sample_euler(u, noise.clone(), 50, a.shift),
        "teacher-4 (Euler, CFG)": lambda: sample_euler(u, noise.clone(), 4, a.shift),
        "pi-Flow GM student, 4 NFE": lambda: sample_gm(lambda xx, s: student(xx, s, tokens), noise.clone(), 4,
                                                      a.shift, 0.5, 128, 1e-4),
    }
    results = {}
    for name, run in methods.items():
        t0 = time.time()
        with torch.no_grad():
            out = run().clamp(-1, 1)
        ms = 1000 * (time.time() - t0) / len(prompts)
        with torch.no_grad():
            feats = clf.features(out)
            pred = clf(out).argmax(1)
        f = feats.reshape(a.prompts, a.seeds, -1)
        pair = torch.cdist(f, f)  # (P, S, S)
        div = float(pair.sum() / (a.prompts * a.seeds * (a.seeds - 1)))
        results[name] = {
            "kid_x1000": round(1000 * kid(feats, ref), 3),
            "fd": round(frechet(feats, ref), 3),
            "diversity": round(div, 4),
            "adherence": round(float((pred == labels).float().mean()), 4),
            "ms_per_image": round(ms, 1),
        }
        slug = name.split(" ")[0].replace("pi-Flow", "student4")
        to_grid(out[: 8 * a.seeds], 8).save(os.path.join(a.out, f"{slug}.png"))
        print(name, results[name], flush=True)

    t50, t4, s4 = (results[k] for k in methods)
    claims = {
        "student_kid_le_1.3x_teacher50": s4["kid_x1000"] <= 1.3 * max(t50["kid_x1000"], 1e-9),
        "student_diversity_ge_0.9x_teacher50": s4["diversity"] >= 0.9 * t50["diversity"],
        "teacher4_worse_than_teacher50": t4["kid_x1000"] > t50["kid_x1000"],
    }
    meta = {
        "teacher_steps": int(tck["step"]), "student_steps": int(sck["step"]), "prompts": a.prompts,
        "seeds": a.seeds, "guidance": a.guidance, "shift": a.shift, "classifier_train_acc": round(train_acc, 4),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    with open(os.path.join(a.out, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "results": results, "claims": claims}, fh, indent=2)
    rows = ["| method | KID×1000 ↓ | FD ↓ | diversity ↑ | adherence ↑ | ms/image (torch CPU) |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(f"| {name} | {r['kid_x1000']} | {r['fd']} | {r['diversity']} | {r['adherence']} | {r['ms_per_image']} |")
    rows.append("")
    rows.append(f"Teacher {meta['teacher_steps']} steps, student {meta['student_steps']} π-ID steps; "
                f"{a.prompts} prompts × {a.seeds} seeds; classifier train accuracy {meta['classifier_train_acc']}; "
                f"{meta['date']}. Claims: " + ", ".join(f"{k}={v}" for k, v in claims.items()))
    with open(os.path.join(a.out, "table.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    # publish all results together (a run cut short leaves the previous results intact)
    os.makedirs(final_out, exist_ok=True)
    for name in os.listdir(a.out):
        os.replace(os.path.join(a.out, name), os.path.join(final_out, name))
    os.rmdir(a.out)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
