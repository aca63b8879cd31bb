"""Helpers of the serving tests: the fixture models, a recording batch member, PNG decoding."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from conftest import BACKEND_ROOT
from piflow_torch.manifest import load_manifest
from piflow_torch.pipeline.spec import GenerationSpec

FIXTURE_MANIFESTS = BACKEND_ROOT / "fixtures" / "manifests"
FLUX_TINY = FIXTURE_MANIFESTS / "piflux-tiny.json"
QWEN_TINY = FIXTURE_MANIFESTS / "piqwen-tiny.json"


@lru_cache(maxsize=None)
def runtime(name: str):
    """The fixture model `name` (piflux-tiny | piqwen-tiny) loaded once per test session, CPU float32."""
    from piflow_torch.pipeline.generate import load_model

    return load_model(load_manifest(FIXTURE_MANIFESTS / f"{name}.json"), dtype=torch.float32,
                      device=torch.device("cpu"))


def spec(runtime, **overrides) -> GenerationSpec:
    m = runtime.manifest
    fields = dict(prompt="a red apple", seed=7, count=1, width=m.image.defaultWidth, height=m.image.defaultHeight,
                  nfe=m.sampling.defaultNfe, guidance=m.guidance.default, preview=False)
    return GenerationSpec(**{**fields, **overrides})


class Recorder:
    """A BatchMember that keeps what it receives; `cancel_after` cancels it after that many NFEs."""

    def __init__(self, spec: GenerationSpec, cancel_after: int | None = None):
        self.spec = spec
        self.progress: list[tuple[int, int, bytes | None]] = []
        self.images: dict[int, tuple[int, bytes]] = {}
        self.cancel_after = cancel_after

    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.progress) >= self.cancel_after

    def on_progress(self, step, nfe, preview_png):
        self.progress.append((step, nfe, preview_png))

    def on_image(self, index, seed, png, width, height):
        self.images[index] = (seed, png)


def rgb(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image).astype(np.int16)


# ---- a real server process -------------------------------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402

READY = re.compile(r"piflow-torch listening on (http://\S+)")


class ServerProcess:
    """`python -m piflow_torch.server …` as a child process; `url`, `secret`, `stderr()`, `stop()`."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, start_timeout: float = 300.0):
        self.secret = secrets.token_hex(16)
        full_env = {**os.environ, "PYTHONPATH": str(BACKEND_ROOT), "PIFLOW_BACKEND_SECRET": self.secret,
                    **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "piflow_torch.server", "--port", "0", *args],
                                     cwd=REPO_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self._err: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.url = self._wait_ready(start_timeout)

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._err.append(line)

    def _wait_ready(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=10)
                return None
            match = READY.search(line)
            if match:
                return match.group(1)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout} s:\n{self.stderr()}")

    def stderr(self) -> str:
        return "".join(self._err)

    def stop(self, grace: float = 30.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-Piflow-Backend-Secret": self.secret},
                            timeout=120.0, **kwargs)


def events_of(response: httpx.Response) -> list[dict]:
    """Every NDJSON event of a streamed response (keepalive blank lines skipped)."""
    return [json.loads(line) for line in response.iter_lines() if line.strip()]


def generate(client: httpx.Client, model: str, body: dict, request_id: str | None = None) -> list[dict]:
    headers = {"X-Request-Id": request_id} if request_id else {}
    with client.stream("POST", f"/v1/models/{model}/generate", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        return events_of(response)
