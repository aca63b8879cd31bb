"""Train the flow-matching teacher (u-prediction, CFG by condition dropout, EMA), resumable.

  nice -n 5 /usr/bin/python3 -m models.recipe.train_teacher --run models/runs/teacher --until 20:35

Checkpoints go to <run>/checkpoints/last.pt (atomic replace, every --ckpt-minutes and at the end);
rerunning the same command resumes. Loss is logged as JSON lines to <run>/train.log.jsonl.
"""

from __future__ import annotations

import argparse

import torch

from . import trainloop
from .flow import warp
from .nets import EmojiNet, NetConfig, count_params
from .trainloop import StepResult


def sample_sigma(n: int, gen: torch.Generator, shift: float = 1.0) -> torch.Tensor:
    """Logit-normal(0, 1) sigmas (SD3-style), warped by `shift` as the sampling schedule is (SD3's
    resolution-dependent shift: more of the training at the high noise levels where the picture's
    identity is decided), mixed with 10% uniform to cover both ends. shift 1 = plain logit-normal."""
    on = gen.device  # a CUDA generator draws on the GPU (trainloop.noise_generator)
    s = warp(torch.sigmoid(torch.randn(n, generator=gen, device=on)), shift)
    u = torch.rand(n, generator=gen, device=on)
    pick = torch.rand(n, generator=gen, device=on) < 0.1
    return torch.where(pick, u, s)


def flow_loss(net: EmojiNet, x0: torch.Tensor, tokens: torch.Tensor, gen: torch.Generator,
              sigma_shift: float = 1.0) -> torch.Tensor:
    sigma = sample_sigma(x0.shape[0], gen, sigma_shift)
    eps = torch.randn(x0.shape, generator=gen, device=gen.device)
    s = sigma[:, None, None, None]
    xt = (1.0 - s) * x0 + s * eps
    return (net(xt, sigma, tokens) - (eps - x0)).pow(2).mean()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    trainloop.add_run_args(p, batch=64, lr=5e-4, warmup=200, ema=0.999)
    p.add_argument("--channels", type=int, default=40)
    trainloop.add_loop_args(p, log_every=25)
    a = p.parse_args(argv)
    if trainloop.launched_workers(main, argv, a):
        return

    run = trainloop.start_run(a)
    log, tok, data = run.log, run.tok, run.data

    st = trainloop.resume_state(run, a.lr)
    if st is None:
        cfg = NetConfig(vocab_size=len(tok.vocab), max_length=tok.max_length, channels=a.channels)
        torch.manual_seed(a.seed)
        st = trainloop.fresh_state(EmojiNet(cfg), a.lr, a.seed, a.seed + 1)
        log(event="start", params=count_params(st.net), config=cfg.to_dict(), images=len(data))

    def checkpoint() -> None:
        trainloop.save_checkpoint(st, run.ckpt_path, "teacher", {"args": vars(a)})

    def loss_step() -> StepResult:
        x0, tokens = data.batch(st.rng, run.batch)
        return flow_loss(st.net, x0, tokens, st.gen), {}

    trainloop.train_loop(st, loss_step, checkpoint, a, run, step_time=1.0)


if __name__ == "__main__":
    main()
