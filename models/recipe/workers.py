"""Data-parallel training: --workers N processes of one thread each, the global batch split between
them, gradients averaged with one all-reduce per step (torch.distributed, gloo, CPU).

  .toolchain/torch-py/bin/python -m models.v2.train_teacher --run models/runs/v2-teacher --workers 2

Why processes and not threads: on this shared 2-core machine a bf16 step with 2 intra-op threads waits
on every kernel for the busier core (5.15 s vs 0.48 s, models/README.md), while two 1-thread workers
meet once per step, so a busy core slows a step down instead of stalling it. The trainers start the
workers themselves (launch) rather than through torchrun, whose own options (--run-path) swallow the
trainers' --run. With one worker everything here is a no-op and a trainer runs exactly as before.

Every worker holds the same weights, optimiser state and EMA (rank 0's, broadcast at the start; the
averaged gradients are bitwise the same on all ranks). Only rank 0 logs and writes checkpoints; each
rank draws its own batches and noise from streams split off the checkpoint's by rank.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


@dataclass(frozen=True)
class Workers:
    rank: int = 0
    world: int = 1

    @property
    def chief(self) -> bool:
        """The worker that logs and writes checkpoints and snapshots."""
        return self.rank == 0

    def local_batch(self, batch: int) -> int:
        """This worker's share of the global batch."""
        if batch % self.world:
            raise ValueError(f"--batch {batch} does not split evenly over {self.world} workers")
        return batch // self.world

    def any(self, flag: bool) -> bool:
        """True on every worker when it is true on one: stop and skip decisions must be taken together,
        or the others would wait for a gradient that never comes."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def average_gradients(self, params: list[nn.Parameter], loss: torch.Tensor) -> float:
        """Replace each gradient by its mean over the workers (one all-reduce of one flat buffer, the loss
        riding along); returns the mean loss."""
        if self.world == 1:
            return float(loss.item())
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1).float()])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()
        return float(flat[-1].item())

    def same_weights(self, *modules: nn.Module) -> None:
        """Rank 0's parameters and buffers on every worker."""
        if self.world == 1:
            return
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                buf = t.data.contiguous()  # gloo sends dense tensors; channels-last weights are not
                dist.broadcast(buf, src=0)
                if buf is not t.data:
                    t.data.copy_(buf)

    def split_streams(self, rng: np.random.Generator, gen: torch.Generator) -> tuple[np.random.Generator, torch.Generator]:
        """Per-rank data and noise streams derived from the (shared) checkpoint streams; unchanged for one
        process, so a single-process run stays bit-for-bit what it was."""
        if self.world == 1:
            return rng, gen
        root = int(rng.integers(2**62))
        seq = np.random.SeedSequence(root, spawn_key=(self.rank,))
        own_rng = np.random.default_rng(seq)
        own_gen = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
        return own_rng, own_gen


def join() -> Workers:
    """The workers of this run (WORLD_SIZE / RANK / MASTER_* as launch sets them), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Workers()
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world)
    return Workers(dist.get_rank(), dist.get_world_size())


def in_worker() -> bool:
    """True inside a process that launch started."""
    return "WORLD_SIZE" in os.environ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_main(rank: int, entry: Callable[[list[str]], object], argv: list[str], world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        entry(argv)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(entry: Callable[[list[str]], object], argv: list[str], world: int) -> None:
    """Run entry(argv) in `world` fresh processes and wait for them. SIGTERM/SIGINT reach every worker
    (each then finishes its step and the chief writes the checkpoint); when one worker dies, torch
    terminates the others and the error is raised here, so nothing is left waiting on a dead peer."""
    ctx = mp.start_processes(_worker_main, args=(entry, argv, world, _free_port()), nprocs=world, join=False,
                             start_method="spawn")

    def forward(signum, _frame) -> None:
        for proc in ctx.processes:
            if proc.is_alive():
                os.kill(proc.pid, signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not ctx.join():
            pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
