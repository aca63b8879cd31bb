"""Teacher training step time of 64 px design candidates, as ratios against v1's network measured in the
same run (interleaved rounds, median per candidate), on this machine's CPU.

  nice .toolchain/torch-py/bin/python -m models.v2.bench_steps [--rounds 5 --batch 32]
      [--only v1,px64-p4-c64 --precisions fp32,bf16 --threads 1]

--precisions bf16 adds each candidate's step under CPU bf16 autocast (what `--precision bf16` of the
trainers does: weights, gradients and AdamW stay fp32), named "<candidate> bf16"; ratios are still
against v1 in fp32.

One step = forward + backward + AdamW on a flow-matching loss with random data and text vectors.
Candidates (all with self-attention at the trunk's two coarsest levels):
  v1            32 px, patch 2 (trunk 16x16), 40 channels, word embeddings   (the baseline)
  px64-p4-c64   64 px pixels, patch 4 (trunk 16x16), 64 channels, text vector
  px64-p4-c80   64 px pixels, patch 4, 80 channels
  px64-p4-c96   64 px pixels, patch 4, 96 channels
  px64-p2-c40   64 px pixels, patch 2 (trunk 32x32), 40 channels
  lat16-c64     a 16x16x4 latent (an autoencoder with 4x downsampling), patch 1, 64 channels: the
                trunk of px64-p4-c64 without the patch stem; the autoencoder's own cost comes on top
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from models.recipe.nets import EmojiNet, NetConfig, count_params
from models.recipe.train_teacher import flow_loss
from models.recipe.trainloop import autocast

CANDIDATES = {
    "v1": dict(image_size=32, patch=2, channels=40, text_input="tokens", vocab_size=4251),
    "px64-p4-c64": dict(image_size=64, patch=4, channels=64, text_input="vector", text_dim=384, vocab_size=1),
    "px64-p4-c80": dict(image_size=64, patch=4, channels=80, text_input="vector", text_dim=384, vocab_size=1),
    "px64-p4-c96": dict(image_size=64, patch=4, channels=96, text_input="vector", text_dim=384, vocab_size=1),
    "px64-p2-c40": dict(image_size=64, patch=2, channels=40, text_input="vector", text_dim=384, vocab_size=1,
                        attn_levels=(2,)),
    "lat16-c64": dict(image_size=16, patch=1, channels=64, image_channels=4, text_input="vector", text_dim=384,
                      vocab_size=1),
}


def make(name: str, batch: int, gen: torch.Generator):
    cfg = NetConfig(**CANDIDATES[name])
    net = EmojiNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x0 = torch.rand(batch, cfg.image_channels, cfg.image_size, cfg.image_size, generator=gen) * 2 - 1
    if cfg.text_input == "tokens":
        text = torch.randint(0, cfg.vocab_size, (batch, cfg.max_length), generator=gen)
    else:
        text = torch.nn.functional.normalize(torch.randn(batch, cfg.text_dim, generator=gen), dim=1)
    return net, opt, x0, text


def step(net, opt, x0, text, gen, precision: str = "fp32") -> float:
    t0 = time.perf_counter()
    with autocast(precision):
        loss = flow_loss(net, x0, text, gen).float()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed steps per candidate per round")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates (v1 is always run)")
    p.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    names = ["v1"] + [n for n in a.only.split(",") if n != "v1"]
    runs = {(n if prec == "fp32" else f"{n} {prec}"): (n, prec) for prec in a.precisions.split(",") for n in names}
    runs.setdefault("v1", ("v1", "fp32"))
    setups = {n: make(n, a.batch, gen) for n in names}
    for label, (n, prec) in runs.items():
        step(*setups[n], gen, prec)  # warm-up
    times = {label: [] for label in runs}
    for _ in range(a.rounds):
        for label, (n, prec) in runs.items():
            times[label] += [step(*setups[n], gen, prec) for _ in range(a.steps)]
    base = float(np.median(times["v1"]))
    out = {label: {"params": count_params(setups[runs[label][0]][0]), "s_per_step": round(float(np.median(t)), 3),
                   "ratio_to_v1": round(float(np.median(t)) / base, 2)} for label, t in times.items()}
    print(json.dumps({"batch": a.batch, "torch": torch.__version__, "threads": a.threads, "results": out}, indent=1))


if __name__ == "__main__":
    main()
