"""Shared helpers: environment, data, captions, checkpoints, time budgets."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import numpy as np
import torch

from .tokenizer import Tokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA_DIR = os.path.join(ROOT, "models", "data")
MODEL_DIR = os.path.join(ROOT, "models", "piflow-emoji")

# Flow-matching sigma convention of fixtures/golden/README.md: x_s = (1-s) x0 + s eps, u = eps - x0.
EMPTY_CAPTION_P = 0.1  # classifier-free guidance: condition dropout
EXTRA_WORD_P = 0.25  # each tag / short name / category joins the caption with this probability


def setup_torch(threads: int = 2) -> None:
    """2 threads on a shared 2-core box; OMP_WAIT_POLICY/GLIBC_TUNABLES must be set by the caller's env."""
    torch.set_num_threads(threads)


def env_warnings() -> list[str]:
    out = []
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        out.append("OMP_WAIT_POLICY=PASSIVE not set: steps get 3-8x slower under contention")
    if "mmap_threshold" not in os.environ.get("GLIBC_TUNABLES", ""):
        out.append("GLIBC_TUNABLES malloc thresholds not set (~25% slower)")
    return out


def parse_deadline(until: str | None, minutes: float | None) -> float:
    """Absolute UNIX deadline from --until HH:MM (UTC, today or tomorrow) or --minutes."""
    if minutes is not None:
        return time.time() + 60.0 * minutes
    if until is None:
        raise ValueError("give --until HH:MM (UTC) or --minutes")
    now = dt.datetime.now(dt.timezone.utc)
    hh, mm = (int(p) for p in until.split(":"))
    target = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if target <= now - dt.timedelta(hours=12):
        target += dt.timedelta(days=1)
    return target.timestamp()


class EmojiData:
    """Images in [-1, 1] plus a caption sampler over names / tags (bag of words)."""

    def __init__(self, data_dir: str, tokenizer: Tokenizer, size: int = 32):
        arr = np.load(os.path.join(data_dir, f"emoji{size}.npz"))
        self.images = torch.from_numpy(arr["images"]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        w = arr["weights"].astype(np.float64)
        self.p = w / w.sum()
        with open(os.path.join(data_dir, "captions.json"), encoding="utf-8") as f:
            self.captions = json.load(f)
        self.tok = tokenizer
        self.name_ids = [self._ids(c["name"]) for c in self.captions]
        self.extra_ids = [[self._ids(e) for e in c["extra"]] for c in self.captions]

    def _ids(self, text: str) -> list[int]:
        return [i for i in self.tok.encode(text) if i != self.tok.pad_id]

    def __len__(self) -> int:
        return len(self.captions)

    def caption_tokens(self, idx: np.ndarray, rng: np.random.Generator, empty_p: float) -> torch.Tensor:
        L = self.tok.max_length
        out = np.full((len(idx), L), self.tok.pad_id, dtype=np.int64)
        for row, i in enumerate(idx):
            if rng.random() < empty_p:
                continue
            ids = list(self.name_ids[i])
            extras = self.extra_ids[i]
            for j in rng.permutation(len(extras)):
                if rng.random() < EXTRA_WORD_P:
                    ids += extras[j]
            ids = ids[:L]
            out[row, : len(ids)] = ids
        return torch.from_numpy(out)

    def batch(self, rng: np.random.Generator, batch: int, empty_p: float = EMPTY_CAPTION_P):
        idx = rng.choice(len(self), size=batch, p=self.p)
        return self.images[idx], self.caption_tokens(idx, rng, empty_p)


def save_atomic(obj: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.mul_(decay).add_(p.detach(), alpha=1.0 - decay)


def ema_decay(step: int, max_decay: float) -> float:
    # warm-up so early EMA weights are not dominated by the random init
    return min(max_decay, (1.0 + step) / (10.0 + step))


class JsonLog:
    def __init__(self, path: str | None):
        self.path = path

    def __call__(self, **rec) -> None:
        rec = {"time": dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S"), **rec}
        line = json.dumps(rec)
        print(line, flush=True)
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
