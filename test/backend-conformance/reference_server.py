"""A second, independent implementation of the piflow backend protocol (backend/PROTOCOL.md) in Python:
stdlib HTTP server + onnxruntime + numpy + the PyPI `safetensors` package. It exists to show the
protocol is implementable outside Node and that the conformance suite checks the protocol, not our
server:

  python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install onnxruntime numpy safetensors
  PIFLOW_BACKEND_SECRET=s /tmp/pyref/bin/python test/backend-conformance/reference_server.py --port 8790
  PIFLOW_BACKEND_SECRET=s npm run conformance:backend -- http://127.0.0.1:8790

No batching, queueing or timeouts (the protocol does not require them). The step rollout follows
fixtures/golden/README.md §3 (`gm_velocity`, `rollout`) in float64.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort
from safetensors import SafetensorError
from safetensors.numpy import load, save

MAX_BODY = 32 * 1024 * 1024
MAX_BATCH = 16
SECRET_HEADER = "X-Piflow-Backend-Secret"
DTYPES = {"float32": ("F32", np.float32), "int64": ("I64", np.int64)}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ---- models ------------------------------------------------------------------------------------


def load_models(models_dir: str) -> dict:
    models = {}
    for name in sorted(os.listdir(models_dir)):
        path = os.path.join(models_dir, name, "manifest.json")
        if not os.path.isfile(path):
            continue
        manifest = json.load(open(path))
        try:
            for key, f in manifest["files"].items():
                data = open(os.path.join(models_dir, name, f["path"]), "rb").read()
                if len(data) != f["bytes"] or hashlib.sha256(data).hexdigest() != f["sha256"]:
                    raise ValueError(f"file {key} does not match its manifest size/sha256")
        except Exception as e:  # refuse this model, serve the others
            print(f"reference-server: REFUSED {name}: {e}", file=sys.stderr)
            continue
        student = manifest["files"][manifest["sampling"]["perNfe"][str(manifest["sampling"]["defaultNfe"])]["onnx"]]
        tok = manifest["files"][manifest["text"]["tokenizer"]]
        vocab = len(json.load(open(os.path.join(models_dir, name, tok["path"])))["vocab"])
        session = ort.InferenceSession(os.path.join(models_dir, name, student["path"]), providers=["CPUExecutionProvider"])
        models[manifest["id"]] = {"manifest": manifest, "student": student, "session": session, "vocab": vocab}
    return models


def describe(model: dict) -> dict:
    m = model["manifest"]
    return {
        "id": m["id"], "name": m["name"], "policy": m["policy"], "latent": m["latent"],
        "text": {"maxLength": m["text"]["maxLength"], "padId": m["text"]["padId"], "vocabSize": model["vocab"]},
        "guidance": m["guidance"], "defaultNfe": m["sampling"]["defaultNfe"], "nfeOptions": m["sampling"]["nfeOptions"],
        "inputs": model["student"]["inputs"], "outputs": model["student"]["outputs"],
        "maxBatchSize": MAX_BATCH, "executionProvider": "cpu",
    }


# ---- request validation ---------------------------------------------------------------------------


def decode(body: bytes) -> tuple[dict, dict]:
    try:
        tensors = load(body)
        (n,) = np.frombuffer(body[:8], dtype="<u8")
        header = json.loads(body[8 : 8 + int(n)])
    except (SafetensorError, ValueError, Exception) as e:
        raise ApiError(400, "malformed_safetensors", f"body is not valid safetensors: {e}")
    metadata = header.get("__metadata__") or {}
    dtypes = {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return {k: (dtypes[k], v) for k, v in tensors.items()}, metadata


def validate(model: dict, tensors: dict) -> tuple[dict, int]:
    specs = model["student"]["inputs"]
    names = [s["name"] for s in specs]
    for n in names:
        if n not in tensors:
            raise ApiError(400, "missing_tensor", f'missing tensor "{n}"')
    for n in tensors:
        if n not in names:
            raise ApiError(400, "unexpected_tensor", f'unexpected tensor "{n}"')
    batch = None
    feeds = {}
    for spec in specs:
        dtype, arr = tensors[spec["name"]]
        want = DTYPES[spec["dtype"]][0]
        if dtype != want:
            raise ApiError(400, "invalid_dtype", f'tensor "{spec["name"]}" must be {want}, got {dtype}')
        shape = spec["shape"]
        ok = arr.ndim == len(shape) and all(
            i == 0 or not isinstance(d, int) or d < 0 or arr.shape[i] == d for i, d in enumerate(shape)
        ) and all(d > 0 for d in arr.shape)
        if not ok:
            raise ApiError(400, "invalid_shape", f'tensor "{spec["name"]}" has shape {list(arr.shape)}')
        if batch is None:
            batch = arr.shape[0]
        elif arr.shape[0] != batch:
            raise ApiError(400, "invalid_shape", f'tensor "{spec["name"]}" batch differs')
        feeds[spec["name"]] = arr
    if batch > MAX_BATCH:
        raise ApiError(400, "batch_too_large", f"batch {batch} > {MAX_BATCH}")
    for name, arr in feeds.items():
        if arr.dtype == np.float32 and not np.isfinite(arr).all():
            raise ApiError(400, "non_finite", f'tensor "{name}" has a non-finite value')
        if arr.dtype == np.int64 and ((arr < 0) | (arr >= model["vocab"])).any():
            raise ApiError(400, "invalid_value", f'tensor "{name}" has an id out of range')
    if ((feeds["sigma"] < 0) | (feeds["sigma"] > 1)).any():
        raise ApiError(400, "invalid_value", "sigma must be in [0, 1]")
    return feeds, batch


def step_metadata(metadata: dict, sigma_src: float) -> dict:
    ranges = {"sigma_dst": (0, 1), "shift": (1e-12, 1000), "total_substeps": (1, 10000),
              "temperature": (1e-12, 10), "eps": (1e-12, 0.5)}
    out = {}
    for key, (lo, hi) in ranges.items():
        try:
            value = float(metadata[key])
        except (KeyError, ValueError):
            raise ApiError(400, "invalid_metadata", f'metadata "{key}" missing or not a number')
        if not (lo <= value <= hi) or (key == "total_substeps" and value != int(value)):
            raise ApiError(400, "invalid_metadata", f'metadata "{key}" out of range')
        out[key] = value
    if out["sigma_dst"] > sigma_src:
        raise ApiError(400, "invalid_metadata", "sigma_dst above sigma")
    return out


# ---- the GM policy and its rollout (fixtures/golden/README.md §3) ----------------------------------------------


def warp(tau, s):
    return s * tau / (1 + (s - 1) * tau)


def unwarp(sigma, s):
    return sigma / (s + (1 - s) * sigma)


def gm_rollout(out: dict, x_src: np.ndarray, sigma_src: float, meta: dict) -> tuple[np.ndarray, int]:
    eps, temp = meta["eps"], meta["temperature"]
    means_u = out["means_u"].astype(np.float64)  # (B,K,C,H,W)
    logw = out["logweights"].astype(np.float64)  # (B,K,1,H,W)
    logstd = out["logstds"].astype(np.float64).reshape(-1, 1, 1, 1, 1)
    x_src = x_src.astype(np.float64)
    means_x0 = x_src[:, None] - sigma_src * means_u
    var = sigma_src**2 * np.exp(2 * logstd)
    if temp < 1:
        logw = logw / max(temp, eps)
        logw = logw - np.logaddexp.reduce(logw, axis=1, keepdims=True)
        var = var * temp
    s_src = max(sigma_src, eps)
    r_src = (1 - s_src) / s_src

    def velocity(x, sigma):
        st = max(sigma, eps)
        rt = (1 - st) / st
        zeta = rt * rt - r_src * r_src
        nu = (rt * x / st - r_src * x_src / s_src)[:, None]
        d = np.maximum(1 + var * zeta, eps)
        post_means = (means_x0 + var * nu) / d
        logits = logw + (means_x0 * (nu - 0.5 * zeta * means_x0) / d).sum(axis=2, keepdims=True)
        logits = logits - logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        w = w / w.sum(axis=1, keepdims=True)
        x0 = (w * post_means).sum(axis=1)
        return (x - x0) / st

    shift = meta["shift"]
    tau0, tau1 = unwarp(sigma_src, shift), unwarp(meta["sigma_dst"], shift)
    n = max(round((tau0 - tau1) * meta["total_substeps"]), 1)
    h = (tau0 - tau1) / n
    x, tau, sigma = x_src.copy(), tau0, sigma_src
    for _ in range(n):
        u = velocity(x, sigma)
        tau = max(tau - h, 0.0)
        nxt = warp(tau, shift)
        x = x + u * (nxt - sigma)
        sigma = nxt
    return x.astype(np.float32), n


# ---- HTTP ----------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    models: dict = {}
    secret: str = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def send(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", self.request_id)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj, extra: dict | None = None):
        self.send(status, json.dumps(obj).encode(), "application/json", extra)

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            if int(length) > MAX_BODY:
                raise ApiError(413, "payload_too_large", "body over the limit")
            return self.rfile.read(int(length))
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return b""
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                self.drain_chunked = True
                raise ApiError(413, "payload_too_large", "body over the limit")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def handle_any(self, method: str):
        self.request_id = self.headers.get("X-Request-Id") or str(uuid.uuid4())
        try:
            path = self.path.split("?")[0]
            if method == "GET" and path == "/healthz":
                return self.send_json(200, {"status": "ok"})
            if method == "GET" and path == "/readyz":
                ready = bool(self.models)
                return self.send_json(200 if ready else 503, {
                    "status": "ready" if ready else "no_models", "executionProvider": "cpu",
                    "models": list(self.models)})
            if not path.startswith("/v1/"):
                raise ApiError(404, "not_found", f"no route {method} {path}")
            given = self.headers.get(SECRET_HEADER) or ""
            if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                       hashlib.sha256(self.secret.encode()).digest()):
                raise ApiError(401, "unauthorized", f"missing or wrong {SECRET_HEADER}")
            parts = path.strip("/").split("/")
            if method == "GET" and parts == ["v1", "models"]:
                return self.send_json(200, {"executionProvider": "cpu",
                                            "models": [describe(m) for m in self.models.values()]})
            if len(parts) >= 3 and parts[:2] == ["v1", "models"]:
                model = self.models.get(parts[2])
                if method == "GET" and len(parts) == 3:
                    if model is None:
                        raise ApiError(404, "model_not_found", f'model "{parts[2]}" is not served here')
                    return self.send_json(200, describe(model))
                if method == "POST" and len(parts) == 4 and parts[3] in ("forward", "step"):
                    if model is None:
                        raise ApiError(404, "model_not_found", f'model "{parts[2]}" is not served here')
                    return self.run_model(model, parts[3])
            raise ApiError(404, "not_found", f"no route {method} {path}")
        except ApiError as e:
            extra = {"Connection": "close"} if e.status == 413 else None
            if e.status == 413:
                self.close_connection = True
            self.send_json(e.status, {"error": {"code": e.code, "message": e.message},
                                      "requestId": self.request_id}, extra)
            if getattr(self, "drain_chunked", False):
                self.discard_rest()

    def discard_rest(self, cap: int = 256 * 1024 * 1024):
        # Closing with unread data makes the kernel send RST, and a client still uploading may lose the
        # 413 it was sent; read (and drop) the rest of the upload first, as Node's server does.
        self.wfile.flush()
        drained = 0
        try:
            while drained < cap:
                block = self.rfile.read1(1 << 20)
                if not block:
                    return
                drained += len(block)
        except OSError:
            return

    def run_model(self, model: dict, endpoint: str):
        tensors, metadata = decode(self.read_body())
        feeds, batch = validate(model, tensors)
        meta = None
        if endpoint == "step":
            sigma = feeds["sigma"]
            if not (sigma == sigma[0]).all():
                raise ApiError(400, "invalid_value", "step needs one sigma for the batch")
            meta = step_metadata(metadata, float(sigma[0]))
        names = [o["name"] for o in model["student"]["outputs"]]
        outputs = dict(zip(names, model["session"].run(names, feeds)))
        if endpoint == "forward":
            return self.send(200, save({k: np.ascontiguousarray(v, np.float32) for k, v in outputs.items()}),
                             "application/octet-stream")
        x, n = gm_rollout(outputs, feeds["x"], float(feeds["sigma"][0]), meta)
        body = save({"x": x}, metadata={"sigma": str(meta["sigma_dst"]), "num_substeps": str(n)})
        self.send(200, body, "application/octet-stream")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--models-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "models"))
    args = p.parse_args()
    Handler.secret = os.environ.get("PIFLOW_BACKEND_SECRET", "")
    if not Handler.secret:
        sys.exit("PIFLOW_BACKEND_SECRET is required")
    Handler.models = load_models(args.models_dir)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"reference-server listening on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
