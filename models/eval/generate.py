"""Where evaluated images come from: a shipped model directory run in onnxruntime exactly as the product
runs it, or the product's public HTTP API.

OnnxModel(models/<id>) follows the manifest: the product's seeded noise (recipe/noise.py, the Python twin
of @piflow/policy `randn`: image i of a request with seed s starts from randn(C*H*W, s + i)), the
manifest's tokenizer, the per-NFE schedule and substeps for the GM student (recipe/flow.py sample_gm,
checked against the golden vectors), and the teacher with classifier-free guidance against the empty
prompt, integrated by Euler over the same shifted schedule. Pixels are quantised as the product does
(value range -> 0..255, round half to even, clamp).

ApiClient(url, key) asks POST /v1/generations for base64 PNGs (count <= 4 per request), honouring
Retry-After on 429/503.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from models.recipe import noise
from models.recipe.flow import sample_euler, sample_gm
from models.recipe.tokenizer import Tokenizer

CHUNK = 64  # images per batched onnxruntime call: bounds memory (K=8 means at 32 px: 6 MB per chunk)


def to_uint8(x: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """(N,3,H,W) float in value_range -> (N,H,W,3) uint8, rounded half to even like Uint8ClampedArray."""
    lo, hi = value_range
    v = (x.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(v), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def seeded_noise(shape: tuple[int, int, int], seeds: list[int]) -> np.ndarray:
    """The product's starting noise: image i of seed s is randn(C*H*W, s) (seeds taken mod 2**32)."""
    n = int(np.prod(shape))
    return np.stack([noise.randn(n, s % 2**32).reshape(shape) for s in seeds]).astype(np.float32)


def sample_in_chunks(prompts: list[str], seeds: list[int], condition: Callable, shape: tuple[int, int, int],
                     run: Callable, value_range: tuple[float, float] | None) -> np.ndarray:
    """run(noise, condition(prompts)) over CHUNK images at a time; uint8 images, or the float results when
    value_range is None."""
    out = []
    for i in range(0, len(prompts), CHUNK):
        cond = condition(prompts[i : i + CHUNK])
        x = torch.from_numpy(seeded_noise(shape, seeds[i : i + CHUNK]))
        with torch.no_grad():
            x = run(x, cond).numpy()
        out.append(x if value_range is None else to_uint8(x, value_range))
    return np.concatenate(out)


def cfg_euler(forward: Callable, x: torch.Tensor, cond: np.ndarray, uncond: np.ndarray, guidance: float,
              steps: int, shift: float) -> torch.Tensor:
    """The teacher's sampler: Euler over `steps` shifted steps of u = uncond + g (cond - uncond), the two
    halves in one batched forward(x, sigma, condition) call."""
    both = np.concatenate([cond, uncond])

    def u(xx, s):
        out = forward(torch.cat([xx, xx]), torch.cat([s, s]), both)
        c, unc = out.chunk(2)
        return unc + guidance * (c - unc)

    return sample_euler(u, x, steps, shift)


class OnnxModel:
    def __init__(self, model_dir: str, threads: int = 2):
        with open(os.path.join(model_dir, "manifest.json"), encoding="utf-8") as f:
            self.manifest = json.load(f)
        files = self.manifest["files"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1

        def session(role: str) -> ort.InferenceSession:
            return ort.InferenceSession(os.path.join(model_dir, files[role]["path"]), opts,
                                        providers=["CPUExecutionProvider"])

        self.student_session = session(self.manifest["sampling"]["perNfe"][str(self.default_nfe)]["onnx"])
        self.teacher_session = session(self.manifest["teacher"]["onnx"])
        self.tokenizer = Tokenizer.load(os.path.join(model_dir, files[self.manifest["text"]["tokenizer"]]["path"]))
        lat = self.manifest["latent"]
        self.shape = (lat["channels"], lat["height"], lat["width"])
        self.value_range = tuple(self.manifest["image"]["valueRange"])

    @property
    def default_nfe(self) -> int:
        return int(self.manifest["sampling"]["defaultNfe"])

    def tokens(self, prompts: list[str]) -> np.ndarray:
        return np.asarray([self.tokenizer.encode(p) for p in prompts], dtype=np.int64)

    def noise(self, seeds: list[int]) -> np.ndarray:
        return seeded_noise(self.shape, seeds)

    def _forward(self, sess: ort.InferenceSession, x: torch.Tensor, sigma: torch.Tensor, tokens: np.ndarray):
        out = sess.run(None, {"x": x.numpy().astype(np.float32), "sigma": sigma.numpy().astype(np.float32),
                              "tokens": tokens})
        return tuple(torch.from_numpy(o) for o in out)

    def _chunked(self, prompts: list[str], seeds: list[int], run: Callable, latents: bool) -> np.ndarray:
        return sample_in_chunks(prompts, seeds, self.tokens, self.shape, run, None if latents else self.value_range)

    def student(self, prompts: list[str], seeds: list[int], nfe: int | None = None,
                latents: bool = False) -> np.ndarray:
        """The GM student at `nfe` (default: the manifest's): uint8 (N,H,W,3), or with latents=True the
        float (N,C,H,W) result before quantisation."""
        nfe = self.default_nfe if nfe is None else nfe
        spec = self.manifest["sampling"]["perNfe"][str(nfe)]
        temperature = None if spec["temperature"] == "auto" else float(spec["temperature"])

        def run(x, tokens):
            return sample_gm(lambda xx, s: self._forward(self.student_session, xx, s, tokens), x, nfe,
                             spec["shift"], spec["finalStepSizeScale"], spec["totalSubsteps"],
                             self.manifest["sampling"]["eps"], temperature)

        return self._chunked(prompts, seeds, run, latents)

    def teacher(self, prompts: list[str], seeds: list[int], steps: int, guidance: float | None = None) -> np.ndarray:
        """The teacher by Euler over `steps` shifted steps with CFG against the empty prompt."""
        spec = self.manifest["teacher"]
        g = float(spec["guidance"] if guidance is None else guidance)
        pad = int(self.manifest["text"]["padId"])

        def forward(x, sigma, tokens):
            return self._forward(self.teacher_session, x, sigma, tokens)[0]

        def run(x, tokens):
            return cfg_euler(forward, x, tokens, np.full_like(tokens, pad), g, steps, spec["shift"])

        return self._chunked(prompts, seeds, run, latents=False)


class ApiError(RuntimeError):
    pass


class ApiClient:
    """The public API (POST /v1/generations, base64 PNGs), for images through the product path."""

    def __init__(self, url: str, key: str, model: str | None = None, timeout: float = 120.0):
        self.url, self.key, self.model, self.timeout = url.rstrip("/"), key, model, timeout

    def _post(self, body: dict) -> dict:
        req = urllib.request.Request(
            f"{self.url}/v1/generations", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        for _ in range(20):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as res:
                    return json.load(res)
            except urllib.error.HTTPError as e:
                if e.code in (429, 503):
                    time.sleep(float(e.headers.get("Retry-After") or 1))
                    continue
                raise ApiError(f"HTTP {e.code}: {e.read().decode(errors='replace')[:500]}") from e
        raise ApiError("still rate-limited after 20 tries")

    def generate(self, prompt: str, seed: int, count: int, size: int) -> np.ndarray:
        """count images (seeds seed .. seed+count-1) at size px, uint8 (count, size, size, 3)."""
        body = {"prompt": prompt, "seed": seed, "count": count, "size": size, "response": "base64"}
        if self.model:
            body["model"] = self.model
        res = self._post(body)
        imgs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(im["data"]))).convert("RGB"))
                for im in res["images"]]
        return np.stack(imgs)

    def images(self, prompts: list[str], seeds: list[int], size: int) -> np.ndarray:
        """One image per (prompt, seed); consecutive seeds of one prompt share a request (count <= 4)."""
        out, i = [], 0
        while i < len(prompts):
            n = 1
            while (n < 4 and i + n < len(prompts) and prompts[i + n] == prompts[i]
                   and seeds[i + n] == seeds[i] + n):
                n += 1
            out.append(self.generate(prompts[i], seeds[i], n, size))
            i += n
        return np.concatenate(out)
