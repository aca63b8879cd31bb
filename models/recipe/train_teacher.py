"""Train the flow-matching teacher (u-prediction, CFG by condition dropout, EMA), resumable.

  nice -n 5 /usr/bin/python3 -m models.recipe.train_teacher --run models/runs/teacher --until 20:35

Checkpoints go to <run>/checkpoints/last.pt (atomic replace, every --ckpt-minutes and at the end);
rerunning the same command resumes. Loss is logged as JSON lines to <run>/train.log.jsonl.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import time

import numpy as np
import torch

from .common import (
    DATA_DIR,
    MODEL_DIR,
    EmojiData,
    JsonLog,
    ema_decay,
    ema_update,
    env_warnings,
    parse_deadline,
    save_atomic,
    setup_torch,
)
from .nets import EmojiNet, NetConfig, count_params
from .tokenizer import Tokenizer


def sample_sigma(n: int, gen: torch.Generator) -> torch.Tensor:
    """Logit-normal(0, 1) sigmas (SD3-style) mixed with 10% uniform to cover both ends."""
    s = torch.sigmoid(torch.randn(n, generator=gen))
    u = torch.rand(n, generator=gen)
    pick = torch.rand(n, generator=gen) < 0.1
    return torch.where(pick, u, s)


def flow_loss(net: EmojiNet, x0: torch.Tensor, tokens: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    sigma = sample_sigma(x0.shape[0], gen)
    eps = torch.randn(x0.shape, generator=gen)
    s = sigma[:, None, None, None]
    xt = (1.0 - s) * x0 + s * eps
    return (net(xt, sigma, tokens) - (eps - x0)).pow(2).mean()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", required=True)
    p.add_argument("--data", default=DATA_DIR)
    p.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tokenizer.json"))
    p.add_argument("--until", default=None, help="stop by HH:MM UTC")
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--channels", type=int, default=40)
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    setup_torch(a.threads)
    log = JsonLog(os.path.join(a.run, "train.log.jsonl"))
    for w in env_warnings():
        log(warning=w)
    deadline = parse_deadline(a.until, a.minutes)
    tok = Tokenizer.load(a.tokenizer)
    data = EmojiData(a.data, tok)
    ckpt_path = os.path.join(a.run, "checkpoints", "last.pt")

    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        cfg = NetConfig.from_dict(ck["config"])
        net = EmojiNet(cfg)
        net.load_state_dict(ck["model"])
        ema = copy.deepcopy(net)
        ema.load_state_dict(ck["ema"])
        opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.0)
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = ck["np_rng"]
        gen = torch.Generator()
        gen.set_state(ck["torch_rng"])
        log(event="resume", step=step)
    else:
        cfg = NetConfig(vocab_size=len(tok.vocab), max_length=tok.max_length, channels=a.channels)
        torch.manual_seed(a.seed)
        net = EmojiNet(cfg)
        ema = copy.deepcopy(net)
        opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.0)
        step = 0
        rng = np.random.default_rng(a.seed)
        gen = torch.Generator().manual_seed(a.seed + 1)
        log(event="start", params=count_params(net), config=cfg.to_dict(), images=len(data))
    for pe in ema.parameters():
        pe.requires_grad_(False)

    def checkpoint() -> None:
        save_atomic(
            {
                "kind": "teacher",
                "config": cfg.to_dict(),
                "model": net.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "np_rng": rng.bit_generator.state,
                "torch_rng": gen.get_state(),
                "args": vars(a),
            },
            ckpt_path,
        )

    stop = {"flag": False}
    # SIGTERM/SIGINT: finish the current step, write the checkpoint, exit cleanly
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    last_ckpt = time.time()
    t_window, loss_acc, n_acc, step_time = time.time(), 0.0, 0, 1.0
    while True:
        # stop with margin for one more step plus the final checkpoint
        if stop["flag"] or time.time() + 3 * step_time + 10 > deadline or (a.max_steps is not None and step >= a.max_steps):
            break
        t0 = time.time()
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x0, tokens = data.batch(rng, a.batch)
        loss = flow_loss(net, x0, tokens, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema_update(ema, net, ema_decay(step, a.ema))
        step += 1
        step_time = 0.9 * step_time + 0.1 * (time.time() - t0) if step > 1 else time.time() - t0
        loss_acc += loss.item()
        n_acc += 1
        if step % a.log_every == 0:
            now = time.time()
            log(step=step, loss=round(loss_acc / n_acc, 5), s_per_step=round((now - t_window) / n_acc, 3), lr=lr)
            t_window, loss_acc, n_acc = now, 0.0, 0
        if time.time() - last_ckpt > 60.0 * a.ckpt_minutes:
            checkpoint()
            last_ckpt = time.time()
            log(event="checkpoint", step=step)
    checkpoint()
    log(event="done", step=step, reason="signal" if stop["flag"] else "budget")


if __name__ == "__main__":
    main()
