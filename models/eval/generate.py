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
        n = int(np.prod(self.shape))
        return np.stack([noise.randn(n, s % 2**32).reshape(self.shape) for s in seeds]).astype(np.float32)

    def _forward(self, sess: ort.InferenceSession, x: torch.Tensor, sigma: torch.Tensor, tokens: np.ndarray):
        out = sess.run(None, {"x": x.numpy().astype(np.float32), "sigma": sigma.numpy().astype(np.float32),
                              "tokens": tokens})
        return tuple(torch.from_numpy(o) for o in out)

    def _chunked(self, prompts: list[str], seeds: list[int], run: Callable, latents: bool) -> np.ndarray:
        out = []
        for i in range(0, len(prompts), CHUNK):
            tokens = self.tokens(prompts[i : i + CHUNK])
            x = torch.from_numpy(self.noise(seeds[i : i + CHUNK]))
            with torch.no_grad():
                x = run(x, tokens).numpy()
            out.append(x if latents else to_uint8(x, self.value_range))
        return np.concatenate(out)

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

        def run(x, tokens):
            uncond = np.full_like(tokens, pad)
            both = np.concatenate([tokens, uncond])

            def u(xx, s):
                (out,) = self._forward(self.teacher_session, torch.cat([xx, xx]), torch.cat([s, s]), both)
                cond, unc = out.chunk(2)
                return unc + g * (cond - unc)

            return sample_euler(u, x, steps, spec["shift"])

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
