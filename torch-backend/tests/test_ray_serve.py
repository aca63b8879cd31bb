"""The Ray Serve deployment on a real local Ray cluster (CPU): two replicas of the fixture model behind
Ray's HTTP proxy generate over HTTP, and a cancel reaches the generation whichever replica takes it."""

from __future__ import annotations

import base64
import json
import socket

import httpx
import pytest

from conftest import BACKEND_ROOT
from support import FLUX_TINY, events_of, rgb

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config() -> dict:
    import yaml

    return yaml.safe_load((BACKEND_ROOT / "serve.yaml").read_text())


def test_the_serve_config_validates_and_names_one_gpu_per_replica_and_queue_length_autoscaling():
    from ray.serve.schema import ServeDeploySchema

    app = ServeDeploySchema.model_validate(_config()).applications[0]
    assert app.import_path == "piflow_torch.ray_serve:build_app" and app.route_prefix == "/"
    deployment = app.deployments[0]
    assert deployment.ray_actor_options.num_gpus == 1
    assert deployment.autoscaling_config["target_ongoing_requests"] == 8
    module, _, name = app.import_path.partition(":")
    builder = getattr(__import__(module, fromlist=[name]), name)
    assert isinstance(builder(app.args), serve.Application)


@pytest.fixture(scope="module")
def deployment():
    """The config file's deployment on this CPU: its args and options, with the fixture model, no GPU,
    two fixed replicas (two CPUs), and a per-NFE delay so a cancel can catch a generation."""
    from piflow_torch.ray_serve import PiflowTorch

    secret = "ray-test-secret"
    port = _free_port()
    app_config = _config()["applications"][0]
    options = {k: v for k, v in app_config["deployments"][0].items() if k != "name"}
    options.update(ray_actor_options={**options["ray_actor_options"], "num_cpus": 0.5, "num_gpus": 0},
                   autoscaling_config=None, num_replicas=2)
    args = {**app_config["args"], "models": [str(FLUX_TINY)], "dtype": "fp32", "device": "cpu",
            "service": {**app_config["args"]["service"], "debug_step_delay_ms": 200}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PIFLOW_BACKEND_SECRET": secret, "PYTHONPATH": str(BACKEND_ROOT)}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(PiflowTorch.options(**options).bind(**args), name="piflow-torch", route_prefix="/")
        yield f"http://127.0.0.1:{port}", secret
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_serve_generations_over_http(deployment):
    url, secret = deployment
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    headers = {"X-Piflow-Backend-Secret": secret}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        assert client.get("/v1/models").json()["models"][0]["id"] == "piflux-tiny"
        assert httpx.get(f"{url}/v1/models").status_code == 401
        for seed in (1, 2, 3):
            with client.stream("POST", "/v1/models/piflux-tiny/generate",
                               json={"prompt": "a red apple", "seed": seed, "width": 64, "height": 48},
                               headers={"X-Request-Id": f"ray-{seed}"}) as response:
                assert response.status_code == 200
                events = events_of(response)
            assert [e["type"] for e in events][-1] == "done" and all(e["id"] == f"ray-{seed}" for e in events)
            image = next(e for e in events if e["type"] == "image")
            assert rgb(base64.b64decode(image["data"])).shape == (48, 64, 3)


def test_a_cancel_reaches_the_generation_whichever_replica_takes_it(deployment):
    url, secret = deployment
    headers = {"X-Piflow-Backend-Secret": secret}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for attempt in range(4):  # the router picks the replica: several tries cover both paths
            gid = f"ray-cancel-{attempt}"
            with client.stream("POST", "/v1/models/piflux-tiny/generate", headers={"X-Request-Id": gid},
                               json={"prompt": "cancel me", "seed": attempt, "width": 32, "height": 32}) as response:
                lines = response.iter_lines()
                seen = []
                for line in lines:
                    if line.strip():
                        seen.append(json.loads(line))
                        if seen[-1]["type"] == "progress":
                            break
                cancel = client.post(f"/v1/generations/{gid}/cancel")
                assert cancel.status_code == 200, cancel.text
                seen += [json.loads(line) for line in lines if line.strip()]
            assert seen[-1]["type"] == "error" and seen[-1]["error"]["code"] == "cancelled", seen[-1]
            assert sum(e["type"] == "progress" for e in seen) < 4


def test_the_cancel_board_hands_each_cancel_to_its_owner_once(deployment):
    from piflow_torch.ray_serve import CancelBoard

    board = CancelBoard.remote()
    ray.get(board.register.remote("g1", "replica-a"))
    assert ray.get(board.cancel.remote("g1")) is True
    assert ray.get(board.cancel.remote("unknown")) is False
    assert ray.get(board.collect.remote("replica-b")) == []
    assert ray.get(board.collect.remote("replica-a")) == ["g1"]
    assert ray.get(board.collect.remote("replica-a")) == []
