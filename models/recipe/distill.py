"""pi-ID distillation of the GM student (K components) from the CFG teacher, resumable.

  nice -n 5 /usr/bin/python3 -m models.recipe.distill --teacher models/runs/teacher/checkpoints/last.pt \
      --run models/runs/student --until 20:33

Per step (golden README 'train_sample_t' + 'piid_segment', the paper's pi-ID with data):
  segment from uniform raw-time draws; x_src = (1-s) x0 + s eps from a data batch; the student's GM
  policy at (x_src, s_src); detached rollout of the policy with GM dropout to visited states; the teacher
  with CFG queried there; l2 between the policy's (window-averaged) velocity and the teacher's.
The teacher/student trajectory mix decays from all-teacher to all-student over --decay-steps.
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
from .export import load_net
from .flow import GMPolicy, PiidConfig, piid_segment, train_sample_t
from .nets import EmojiNet, NetConfig, count_params, student_from_teacher
from .tokenizer import Tokenizer


def cfg_teacher(teacher: EmojiNet, tokens: torch.Tensor, guidance: float):
    """u = u(empty) + g (u(prompt) - u(empty)); the empty prompt is all padding (id 0)."""
    uncond = torch.zeros_like(tokens)

    def u(x, sigma):
        out = teacher(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([tokens, uncond]))
        cond, unc = out.chunk(2)
        return unc + guidance * (cond - unc)

    return u


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--teacher", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--data", default=DATA_DIR)
    p.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tokenizer.json"))
    p.add_argument("--until", default=None)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--decay-steps", type=int, default=600, help="teacher_ratio 1 -> 0 over these steps")
    p.add_argument("--nfe", type=int, default=4)
    p.add_argument("--shift", type=float, default=3.2)
    p.add_argument("--final-step-size-scale", type=float, default=0.5)
    p.add_argument("--total-substeps", type=int, default=128)
    p.add_argument("--gm-dropout", type=float, default=0.1)
    p.add_argument("--empty-p", type=float, default=0.05)
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--log-every", type=int, default=10)
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
    piid = PiidConfig(nfe=a.nfe, final_step_size_scale=a.final_step_size_scale, shift=a.shift,
                      total_substeps=a.total_substeps, gm_dropout=a.gm_dropout)
    teacher, tck = load_net(a.teacher)
    for prm in teacher.parameters():
        prm.requires_grad_(False)
    ckpt_path = os.path.join(a.run, "checkpoints", "last.pt")

    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        student = EmojiNet(NetConfig.from_dict(ck["config"]))
        student.load_state_dict(ck["model"])
        ema = copy.deepcopy(student)
        ema.load_state_dict(ck["ema"])
        opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=0.0)
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = ck["np_rng"]
        gen = torch.Generator()
        gen.set_state(ck["torch_rng"])
        log(event="resume", step=step)
    else:
        student = student_from_teacher(teacher, a.k, seed=a.seed)
        ema = copy.deepcopy(student)
        opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=0.0)
        step = 0
        rng = np.random.default_rng(a.seed + 100)
        gen = torch.Generator().manual_seed(a.seed + 101)
        log(event="start", params=count_params(student), k=a.k, teacher_step=int(tck["step"]), piid=vars(piid))
    for pe in ema.parameters():
        pe.requires_grad_(False)
    student.train()

    def checkpoint() -> None:
        save_atomic(
            {
                "kind": "student",
                "config": student.cfg.to_dict(),
                "model": student.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "np_rng": rng.bit_generator.state,
                "torch_rng": gen.get_state(),
                "piid": {**vars(piid), "guidance": a.guidance, "decay_steps": a.decay_steps,
                         "teacher_step": int(tck["step"]), "batch": a.batch},
                "args": vars(a),
            },
            ckpt_path,
        )

    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    last_ckpt = time.time()
    t_window, loss_acc, n_acc, step_time, bad = time.time(), 0.0, 0, 2.0, 0
    while True:
        if stop["flag"] or time.time() + 3 * step_time + 10 > deadline or (
            a.max_steps is not None and step >= a.max_steps
        ):
            break
        t0 = time.time()
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x0, tokens = data.batch(rng, a.batch, empty_p=a.empty_p)
        b = x0.shape[0]
        _, raw_src, sigma_src, seg = train_sample_t(torch.rand(b, generator=gen), piid.nfe,
                                                    piid.final_step_size_scale, piid.shift, piid.eps)
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma_src[:, None, None, None]
        x_src = (1 - s) * x0 + s * noise
        means_u, logweights, logstds = student(x_src, sigma_src, tokens)
        policy = GMPolicy(means_u, logweights, logstds, x_src, sigma_src, eps=piid.eps)
        teacher_ratio = 1.0 - min(step, a.decay_steps) / a.decay_steps if a.decay_steps > 0 else 0.0
        m = piid.num_intermediate_states
        out = piid_segment(
            cfg_teacher(teacher, tokens, a.guidance), policy, x_src, raw_src, sigma_src, seg, teacher_ratio,
            piid, torch.rand(b, m, generator=gen), torch.rand(b, m - 1, generator=gen),
            torch.rand(b, a.k, generator=gen) < piid.gm_dropout,
        )
        loss = out["loss"]
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            # never let one bad batch poison the weights an unattended export would ship
            bad += 1
            log(warning="non-finite loss, step skipped", step=step, skipped=bad)
            if bad > 20:
                raise RuntimeError("distillation diverged (more than 20 non-finite losses)")
            continue
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        if not torch.isfinite(gnorm):
            bad += 1
            log(warning="non-finite gradient, step skipped", step=step, skipped=bad)
            continue
        opt.step()
        ema_update(ema, student, ema_decay(step, a.ema))
        step += 1
        step_time = 0.9 * step_time + 0.1 * (time.time() - t0) if step > 1 else time.time() - t0
        loss_acc += loss.item()
        n_acc += 1
        if step % a.log_every == 0:
            now = time.time()
            log(step=step, loss=round(loss_acc / n_acc, 5), s_per_step=round((now - t_window) / n_acc, 3),
                teacher_ratio=round(teacher_ratio, 4), logstd=round(float(logstds.mean()), 3), lr=lr)
            t_window, loss_acc, n_acc = now, 0.0, 0
        if time.time() - last_ckpt > 60.0 * a.ckpt_minutes:
            checkpoint()
            last_ckpt = time.time()
            log(event="checkpoint", step=step)
    checkpoint()
    log(event="done", step=step, reason="signal" if stop["flag"] else "budget")


if __name__ == "__main__":
    main()
