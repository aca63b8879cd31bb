"""The resumable training loop both trainers share (teacher and pi-ID student): run setup, checkpoint
save/resume, warm-up learning rate, EMA, time budget, SIGTERM/SIGINT handling, JSON-lines logging and
data-parallel workers under torchrun (models/recipe/workers.py). Each trainer only supplies its loss for
one step, on run.batch rows (its worker's share of --batch)."""

from __future__ import annotations

import argparse
import copy
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from .nets import EmojiNet, NetConfig
from .tokenizer import Tokenizer
from .workers import Workers, in_worker, join, launch

# (loss, extra log fields) of one step; the extras join the periodic log line before "lr"
StepResult = tuple[torch.Tensor, dict]


def add_run_args(p: argparse.ArgumentParser, *, batch: int, lr: float, warmup: int, ema: float) -> None:
    """Where the run lives, its data, its budget (--until / --minutes / --max-steps) and the optimiser
    settings, with the trainer's defaults."""
    p.add_argument("--run", required=True)
    p.add_argument("--data", default=DATA_DIR)
    p.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tokenizer.json"))
    p.add_argument("--until", default=None, help="stop by HH:MM UTC")
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=batch, help="global batch, split over torchrun's workers")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--ema", type=float, default=ema)


def add_loop_args(p: argparse.ArgumentParser, log_every: int, threads: int = 2, precision: str = "fp32") -> None:
    """Checkpoint cadence, log cadence, threads, compute precision and seed."""
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--log-every", type=int, default=log_every)
    p.add_argument("--threads", type=int, default=threads, help="intra-op threads of each worker")
    p.add_argument("--workers", type=int, default=1,
                   help="data-parallel processes, --batch split between them (models/recipe/workers.py)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=precision,
                   help="bf16: the loss step under CPU autocast (weights, optimiser and EMA stay fp32); "
                        "auto: bf16 where the CPU has native bf16 matrix units (AMX / AVX512-BF16), else fp32")
    p.add_argument("--seed", type=int, default=0)


def cpu_has_native_bf16() -> bool:
    """AMX tiles or AVX512-BF16: oneDNN then runs bf16 convolutions and matmuls natively (1.72x per v2
    teacher step on one Sapphire Rapids core, models.v2.bench_steps); without them bf16 is emulated and
    slower than fp32."""
    if not os.path.exists("/proc/cpuinfo"):
        return False
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """--device, for the trainers whose loss step runs on a GPU too (the v2 teacher)."""
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: one GPU (weights, optimiser, data and noise there; --workers 1)")


def check_device(a: argparse.Namespace) -> None:
    """--device's refusals, before any worker is spawned or data loaded."""
    device = getattr(a, "device", "cpu")
    if device == "cpu":
        return
    if getattr(a, "workers", 1) > 1:
        raise SystemExit(f"--device {device} trains on one GPU: --workers 1")
    if not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch sees no GPU here")


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """"auto": bf16 on a GPU and on CPUs with native bf16 units, else fp32."""
    if precision == "auto":
        return "bf16" if device == "cuda" or cpu_has_native_bf16() else "fp32"
    return precision


def autocast(precision: str, device: str = "cpu") -> torch.autocast:
    """The context a loss step runs in: bf16 autocast for "bf16" on `device`, a no-op for "fp32"."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")


def launched_workers(entry: Callable[[list[str]], object], argv: list[str] | None, a: argparse.Namespace) -> bool:
    """With --workers N > 1, run entry(argv) in N worker processes and return True once they are done
    (the caller then returns); False inside a worker or for a single process, which trains itself.
    Refuses a --device the run cannot have first (check_device)."""
    check_device(a)
    if a.workers <= 1 or in_worker():
        return False
    launch(entry, list(sys.argv[1:] if argv is None else argv), a.workers)
    return True


@dataclass
class Run:
    """What every trainer sets up first: the log, the deadline, the data, the checkpoint path and the
    workers (one, or torchrun's)."""

    log: Callable[..., None]  # a JsonLog on the chief worker, silent on the others
    deadline: float
    tok: Tokenizer | None  # None when the data carries text embeddings (v2)
    data: Any  # EmojiData (v1) or models.v2.data.V2Data: whatever the trainer's loss_step samples from
    ckpt_path: str
    workers: Workers
    batch: int  # rows per loss step on this worker


def start_run(a: argparse.Namespace, load_data: Callable[[argparse.Namespace], Any] | None = None) -> Run:
    """load_data(a) builds the data set (default: v1's tokenizer + EmojiData from a.tokenizer / a.data)."""
    setup_torch(a.threads)
    workers = join()
    log = JsonLog(os.path.join(a.run, "train.log.jsonl")) if workers.chief else _silent
    for w in env_warnings():
        log(warning=w)
    batch = workers.local_batch(a.batch)
    if workers.world > 1:
        log(event="workers", world=workers.world, batch=a.batch, per_worker=batch)
    deadline = parse_deadline(a.until, a.minutes)
    if load_data is None:
        tok = Tokenizer.load(a.tokenizer)
        data = EmojiData(a.data, tok)
    else:
        tok, data = None, load_data(a)
    return Run(log, deadline, tok, data, os.path.join(a.run, "checkpoints", "last.pt"), workers, batch)


def _silent(**_rec) -> None:
    """The log of a worker that is not the chief (the chief's log covers the run)."""


@dataclass
class TrainState:
    """Everything a checkpoint restores: weights, EMA weights, optimiser, step and both RNG streams."""

    net: EmojiNet
    ema: EmojiNet
    opt: torch.optim.Optimizer
    step: int
    rng: np.random.Generator
    gen: torch.Generator  # the CPU stream a checkpoint saves
    # what loss steps draw their noise from: gen itself on the CPU; on a GPU a generator there, seeded
    # from gen when training starts (noise_generator), so a checkpoint stays loadable on any machine
    noise: torch.Generator | None = None

    def __post_init__(self) -> None:
        for pe in self.ema.parameters():
            pe.requires_grad_(False)


def _adamw_options() -> dict:
    """AdamW without weight decay; fused where torch has the CPU kernel (2.4+): the same update bit for bit
    as the for-loop one, ~5-8 % of a v2 teacher step saved. Reapplied after loading a checkpoint, whose
    param_groups would otherwise bring their own "fused" back."""
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    return {"weight_decay": 0.0, **({"fused": True} if (major, minor) >= (2, 4) else {})}


def _adamw(net: EmojiNet, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(net.parameters(), lr=lr, **_adamw_options())


def place(st: TrainState, device: str) -> None:
    """Weights, EMA and AdamW state onto `device`, in place (Module.to keeps the Parameter objects the
    optimiser holds), and st.noise on it."""
    if device == "cpu":
        st.noise = st.gen
        return
    torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
    torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts (policy math, guidance) on tensor cores
    torch.backends.cudnn.allow_tf32 = True
    st.net.to(device)
    st.ema.to(device)
    for state in st.opt.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                state[key] = value.to(device)
    st.noise = noise_generator(st.gen, device)


def noise_generator(gen: torch.Generator, device: str) -> torch.Generator:
    """A generator on `device` seeded by one draw from the CPU stream `gen` (which advances by it)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return torch.Generator(device).manual_seed(seed)


def on_cpu(value: Any) -> Any:
    """value with every tensor inside it (dicts, lists, tuples) moved to the CPU, so that what a GPU run
    saves loads on a machine without one."""
    if torch.is_tensor(value):
        return value.cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


def use_layout(st: TrainState, precision: str) -> None:
    """bf16: weights, EMA and AdamW moments channels-last (oneDNN's bf16 convolutions work in NHWC: ~7 %
    of a v2 teacher step); fp32 keeps the default layout. Either way each moment then has its parameter's
    strides, because the fused AdamW kernel walks both with the parameter's (a contiguous moment beside a
    channels-last weight, as a checkpoint of the other layout loads, is silently misread:
    recipe/tests/test_layout.py)."""
    fmt = torch.channels_last if precision == "bf16" else torch.contiguous_format
    st.net.to(memory_format=fmt)
    st.ema.to(memory_format=fmt)
    for group in st.opt.param_groups:
        for p in group["params"]:
            state = st.opt.state.get(p, {})
            for k, v in state.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p).copy_(v)  # empty_like keeps p's strides


def resume_state(run: Run, lr: float) -> TrainState | None:
    """The state saved at the run's checkpoint (logged as "resume"), or None when there is none yet."""
    if not os.path.exists(run.ckpt_path):
        return None
    ck = torch.load(run.ckpt_path, map_location="cpu")
    net = EmojiNet(NetConfig.from_dict(ck["config"]))
    net.load_state_dict(ck["model"])
    ema = copy.deepcopy(net)
    ema.load_state_dict(ck["ema"])
    opt = _adamw(net, lr)
    opt.load_state_dict(ck["opt"])
    for group in opt.param_groups:
        group.update(_adamw_options())
    rng = np.random.default_rng()
    rng.bit_generator.state = ck["np_rng"]
    gen = torch.Generator()
    gen.set_state(ck["torch_rng"])
    run.log(event="resume", step=ck["step"])
    return TrainState(net, ema, opt, ck["step"], rng, gen)


def fresh_state(net: EmojiNet, lr: float, np_seed: int, torch_seed: int) -> TrainState:
    """Step 0 of a new run; the EMA starts as a copy of the initial weights."""
    return TrainState(net, copy.deepcopy(net), _adamw(net, lr), 0, np.random.default_rng(np_seed),
                      torch.Generator().manual_seed(torch_seed))


def save_checkpoint(st: TrainState, path: str, kind: str, extra: dict) -> None:
    """Atomic replace of path; extra (e.g. run settings, args) is stored after the state."""
    save_atomic(
        {
            "kind": kind,
            "config": st.net.cfg.to_dict(),
            "model": on_cpu(st.net.state_dict()),
            "ema": on_cpu(st.ema.state_dict()),
            "opt": on_cpu(st.opt.state_dict()),
            "step": st.step,
            "np_rng": st.rng.bit_generator.state,
            "torch_rng": st.gen.get_state(),
            **extra,
        },
        path,
    )


def save_snapshot(st: TrainState, path: str, kind: str, extra: dict) -> None:
    """Atomic replace of path with the small, machine-independent form of a run: the EMA weights in
    fp16 on the CPU, the config and the step (+ extra) — what --resume-snapshot and the exports read,
    ~10 MB for a v2 net, small enough to commit and to come back from the device machine."""
    save_atomic({"kind": kind, "config": st.net.cfg.to_dict(), "step": st.step,
                 "ema": {k: v.half().cpu() for k, v in st.ema.state_dict().items()}, **extra}, path)


def train_loop(
    st: TrainState,
    loss_step: Callable[[], StepResult],
    checkpoint: Callable[[], None],
    a: argparse.Namespace,
    run: Run,
    *,
    step_time: float,
    skip_non_finite: bool = False,
) -> None:
    """Train until the deadline, --max-steps or SIGTERM/SIGINT, then write the final checkpoint.

    a supplies lr, warmup, ema, log_every, ckpt_minutes, max_steps. step_time is the first guess of
    seconds per step for the deadline margin. skip_non_finite: skip a step whose loss or gradient is
    not finite instead of applying it (more than 20 non-finite losses abort the run)."""
    log, workers = run.log, run.workers
    device = getattr(a, "device", "cpu")
    precision = resolve_precision(getattr(a, "precision", "fp32"), device)
    log(event="precision", precision=precision, threads=torch.get_num_threads(), device=device)
    workers.same_weights(st.net, st.ema)
    st.rng, st.gen = workers.split_streams(st.rng, st.gen)
    place(st, device)
    use_layout(st, precision)
    stop = {"flag": False}
    # SIGTERM/SIGINT: finish the current step, write the checkpoint, exit cleanly
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    last_ckpt = time.time()
    t_window, loss_acc, n_acc, bad = time.time(), 0.0, 0, 0
    while True:
        # stop with margin for one more step plus the final checkpoint; all workers stop at the same step
        if workers.any(stop["flag"] or time.time() + 3 * step_time + 10 > run.deadline or (
            a.max_steps is not None and st.step >= a.max_steps
        )):
            break
        t0 = time.time()
        # warm-up from step 0, or from the step a run restarted with a fresh optimiser (warmup_start)
        lr = a.lr * min(1.0, (st.step + 1 - getattr(a, "warmup_start", 0)) / a.warmup)
        for g in st.opt.param_groups:
            g["lr"] = lr
        with autocast(precision, device):
            loss, extra = loss_step()
        loss = loss.float()
        st.opt.zero_grad(set_to_none=True)
        if skip_non_finite and workers.any(not torch.isfinite(loss)):
            # never let one bad batch poison the weights an unattended export would ship
            bad += 1
            log(warning="non-finite loss, step skipped", step=st.step, skipped=bad)
            if bad > 20:
                raise RuntimeError("distillation diverged (more than 20 non-finite losses)")
            continue
        loss.backward()
        mean_loss = workers.average_gradients(list(st.net.parameters()), loss)
        gnorm = torch.nn.utils.clip_grad_norm_(st.net.parameters(), 1.0)
        if skip_non_finite and not torch.isfinite(gnorm):  # the same averaged gradient on every worker
            bad += 1
            log(warning="non-finite gradient, step skipped", step=st.step, skipped=bad)
            continue
        st.opt.step()
        ema_update(st.ema, st.net, ema_decay(st.step, a.ema))
        st.step += 1
        step_time = 0.9 * step_time + 0.1 * (time.time() - t0) if st.step > 1 else time.time() - t0
        loss_acc += mean_loss
        n_acc += 1
        if st.step % a.log_every == 0:
            now = time.time()
            log(step=st.step, loss=round(loss_acc / n_acc, 5), s_per_step=round((now - t_window) / n_acc, 3),
                **extra, lr=lr)
            t_window, loss_acc, n_acc = now, 0.0, 0
        if workers.chief and time.time() - last_ckpt > 60.0 * a.ckpt_minutes:
            checkpoint()
            last_ckpt = time.time()
            log(event="checkpoint", step=st.step)
    if workers.chief:
        checkpoint()
    log(event="done", step=st.step, reason="signal" if stop["flag"] else "budget")
