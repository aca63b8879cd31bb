"""The standalone server as a real process over HTTP: protocol details the conformance suite leaves to
implementations (batching, queue limits, stats, start-up errors, draining). The protocol itself is
checked by test/backend-conformance against this server (npm test)."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import subprocess
import sys
import time

import httpx
import pytest

from conftest import BACKEND_ROOT, REPO_ROOT
from support import FLUX_TINY, QWEN_TINY, ServerProcess, generate, rgb


@pytest.fixture(scope="module")
def server():
    # A per-NFE delay makes concurrent requests overlap on two shared cores, deterministically.
    proc = ServerProcess("--model", str(FLUX_TINY), "--model", str(QWEN_TINY), "--debug-step-delay-ms", "150",
                         "--queue-limit", "4")
    assert proc.url, proc.stderr()
    yield proc
    assert proc.stop() == 0, proc.stderr()


def test_readiness_lists_both_models_and_the_batching_settings(server):
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["executionProvider"] == "cpu"
    assert ready["models"] == ["piflux-tiny", "piqwen-tiny"]
    assert ready["batching"]["maxBatchRows"] == {"piflux-tiny": 8, "piqwen-tiny": 8}
    with server.client() as client:
        entry = client.get("/v1/models/piqwen-tiny").json()
    assert entry["capabilities"] == ["generate"] and entry["guidance"] == {
        "default": None, "min": None, "max": None, "input": None}
    assert entry["latent"] == {"channels": 16, "height": 8, "width": 8} and entry["dtype"] == "float32"


def test_concurrent_requests_of_one_shape_share_forwards_and_match_solo_runs(server):
    bodies = [{"prompt": "a red apple", "seed": s, "width": 64, "height": 48} for s in (1, 2, 3)]
    with server.client() as client:
        solo = [generate(client, "piflux-tiny", body) for body in bodies]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            together = list(pool.map(lambda b: generate(client, "piflux-tiny", b), bodies))
    started = [next(e for e in events if e["type"] == "started") for events in together]
    assert max(s["batchSize"] for s in started) >= 2, started
    for alone, shared in zip(solo, together):
        a = rgb(base64.b64decode(next(e for e in alone if e["type"] == "image")["data"]))
        b = rgb(base64.b64decode(next(e for e in shared if e["type"] == "image")["data"]))
        assert abs(a - b).max() <= 1
    stats = httpx.get(f"{server.url}/readyz").json()["stats"]
    assert stats["largestBatch"] >= 2 and stats["queued"] == 0


def test_requests_of_other_shapes_or_models_never_share_a_batch(server):
    bodies = [("piflux-tiny", {"prompt": "a", "seed": 1, "width": 64, "height": 64}),
              ("piflux-tiny", {"prompt": "a", "seed": 1, "width": 32, "height": 64}),
              ("piqwen-tiny", {"prompt": "a", "seed": 1, "width": 64, "height": 64})]
    with server.client() as client, concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda mb: generate(client, *mb), bodies))
    for events in results:
        assert next(e for e in events if e["type"] == "started")["batchSize"] == 1
        assert events[-1]["type"] == "done"


def test_a_full_queue_answers_503_queue_full_with_retry_after(server):
    body = {"prompt": "queue", "seed": 1, "width": 32, "height": 32}
    with server.client() as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        def post(i):
            with client.stream("POST", "/v1/models/piflux-tiny/generate",
                               json={**body, "seed": i, "width": 32 + 16 * (i % 4)}) as response:
                return response.status_code, response.headers.get("retry-after"), response.read()
        outcomes = list(pool.map(post, range(8)))
    refused = [o for o in outcomes if o[0] == 503]
    assert refused, [o[0] for o in outcomes]
    for status, retry_after, raw in refused:
        assert json.loads(raw)["error"]["code"] == "queue_full" and int(retry_after) >= 1
    assert all(o[0] in (200, 503) for o in outcomes)


def test_an_unknown_endpoint_of_a_generate_model_is_a_json_404(server):
    with server.client() as client:
        response = client.post("/v1/models/piflux-tiny/forward", content=b"x")
    assert response.status_code == 404 and response.json()["error"]["code"] == "endpoint_not_supported"


def _start(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "piflow_torch.server", "--port", "0", *args], cwd=REPO_ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(BACKEND_ROOT),
                               "PIFLOW_BACKEND_SECRET": "s", **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_start_up_refuses_a_missing_secret_an_unknown_model_and_an_unsupported_adapter(tmp_path):
    no_secret = _start("--model", str(FLUX_TINY), env={"PIFLOW_BACKEND_SECRET": ""})
    assert no_secret.returncode != 0 and "PIFLOW_BACKEND_SECRET" in no_secret.stderr
    unknown = _start("--model", "pi-flux9")
    assert unknown.returncode == 1 and "bundled" in unknown.stderr and "pi-flux1-4nfe" in unknown.stderr
    # an adapter whose policy type piflow does not serve: the loader's error names what is supported
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    official = REPO_ROOT / "fixtures/official/piflux_gm_k8_tiny/adapter"
    (adapter / "config.json").write_text((official / "config.json").read_text())
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(official / "diffusion_pytorch_model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(adapter / "diffusion_pytorch_model.safetensors"), metadata={"policy_config": '{"type": "Mixture"}'})
    raw = json.loads(FLUX_TINY.read_text())
    raw["base"]["path"] = str((FLUX_TINY.parent / raw["base"]["path"]).resolve())
    raw["adapter"] = {"path": str(adapter)}
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(raw))
    unsupported = _start("--model", str(manifest))
    assert unsupported.returncode == 1 and "GMFlow" in unsupported.stderr and "Mixture" in unsupported.stderr


def test_sigterm_drains_queued_work_and_exits_cleanly():
    proc = ServerProcess("--model", str(FLUX_TINY), "--debug-step-delay-ms", "300")
    with proc.client() as client, concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(generate, client, "piflux-tiny",
                               {"prompt": "drain", "seed": i, "width": 32 + 16 * i, "height": 32}) for i in range(3)]
        time.sleep(1.0)
        code = proc.stop()
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result()[-1])
            except httpx.HTTPError as error:  # a connection cut while the server went away
                outcomes.append({"type": "cut", "error": str(error)})
    assert code == 0, proc.stderr()
    # every stream ended with a terminal event or was cut by the exit; nothing hangs
    assert all(o["type"] in ("done", "error", "cut") for o in outcomes), outcomes
