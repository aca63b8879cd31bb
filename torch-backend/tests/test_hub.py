"""The real Hugging Face download path of load_student, on local fixtures: repo id + subfolder through
huggingface_hub against a local stand-in for the Hub (``HF_ENDPOINT``) that demands the user's token
(``HF_TOKEN``) and gates a repo, then the offline cache that download filled (``HF_HUB_OFFLINE=1``,
no server). Each load runs in its own process: huggingface_hub reads these variables at import."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from adapter_fixtures import FLUX
from conftest import run_python

TOKEN = "hf_piflow_test_token"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BASE_REPO = "black-forest-labs/FLUX.1-dev"
ADAPTER_REPO = "Lakonik/pi-FLUX.1"
SUBFOLDER = "gmflux_k8_tiny"
GATED_REPO = "someone/gated-model"


def _repo_files() -> dict[str, dict[str, Path]]:
    files = {
        BASE_REPO: {f"transformer/{p.name}": p for p in (FLUX / "base" / "transformer").iterdir()},
        ADAPTER_REPO: {f"{SUBFOLDER}/{p.name}": p for p in (FLUX / "adapter").iterdir()},
    }
    files[ADAPTER_REPO]["other_variant/config.json"] = FLUX / "adapter" / "config.json"  # must not be fetched
    return files


class FakeHub(BaseHTTPRequestHandler):
    """Just enough of the Hub's HTTP API for snapshot_download: repo info and file resolve."""

    repos = _repo_files()
    requests: list[str] = []

    def log_message(self, *_args):  # keep pytest output clean
        pass

    def _deny(self, status: int, code: str) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def _route(self, with_body: bool) -> None:
        FakeHub.requests.append(f"{self.command} {self.path}")
        path = self.path.split("?")[0]
        if GATED_REPO in path:
            return self._deny(403, "GatedRepo")
        if not self._authorised():
            return self._deny(401, "RepoNotFound")
        if path.startswith("/api/models/"):
            repo = path[len("/api/models/") :].split("/revision/")[0]
            if repo not in self.repos:
                return self._deny(404, "RepoNotFound")
            body = json.dumps({"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in self.repos[repo]]}).encode()
            return self._send(body, with_body, {"Content-Type": "application/json"})
        for repo, files in self.repos.items():
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix) :].split("/", 1)[1]
                if name in files:
                    data = files[name].read_bytes()
                    etag = hashlib.sha256(data).hexdigest()
                    return self._send(data, with_body, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"'})
        return self._deny(404, "EntryNotFound")

    def _send(self, body: bytes, with_body: bool, headers: dict[str, str]) -> None:
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self._route(False)

    def do_GET(self):  # noqa: N802
        self._route(True)


@pytest.fixture
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHub.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


LOAD = """
import json, sys, torch
from piflow_torch.adapters import load_student
from piflow_torch.errors import PiflowTorchError
try:
    s = load_student({base!r}, {adapter!r}, adapter_subfolder={sub!r}, dtype=torch.float32, device="cpu")
    print(json.dumps({{"kind": s.kind, "k": s.k, "policy": s.policy_type}}))
except PiflowTorchError as e:
    print(json.dumps({{"error": e.code, "message": e.message}}))
"""


def _load_in_process(env: dict[str, str], base=BASE_REPO, adapter=ADAPTER_REPO, sub=SUBFOLDER) -> dict:
    result = run_python(["-c", LOAD.format(base=base, adapter=adapter, sub=sub)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", **extra}


def test_repo_ids_download_with_the_token_then_load_offline_from_the_cache(tmp_path, hub):
    loaded = _load_in_process(_env(tmp_path, HF_ENDPOINT=hub, HF_TOKEN=TOKEN))
    assert loaded == {"kind": "flux", "k": 8, "policy": "gm"}
    fetched = [r for r in FakeHub.requests if "/resolve/" in r]
    assert fetched and all("other_variant" not in r for r in fetched)  # only the subfolders asked for
    assert (tmp_path / "hub" / "models--Lakonik--pi-FLUX.1" / "snapshots" / COMMIT / SUBFOLDER / "config.json").exists()
    # no server, downloads off: the cache the real download filled is enough
    offline = _load_in_process(_env(tmp_path, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9"))
    assert offline == loaded


def test_without_the_token_the_error_says_to_set_hf_token(tmp_path, hub):
    loaded = _load_in_process(_env(tmp_path, HF_ENDPOINT=hub, HF_TOKEN="hf_wrong"))
    assert loaded["error"] == "model_not_found"
    assert "HF_TOKEN" in loaded["message"] and BASE_REPO in loaded["message"]


def test_a_gated_repo_says_to_accept_the_licence(tmp_path, hub):
    loaded = _load_in_process(_env(tmp_path, HF_ENDPOINT=hub, HF_TOKEN=TOKEN), base=GATED_REPO)
    assert loaded["error"] == "model_not_found"
    assert "gated" in loaded["message"] and "HF_TOKEN" in loaded["message"]


def test_offline_with_an_empty_cache_names_the_cache_and_hf_hub_offline(tmp_path):
    loaded = _load_in_process(_env(tmp_path, HF_HUB_OFFLINE="1"))
    assert loaded["error"] == "model_not_found"
    assert "HF_HUB_OFFLINE=1" in loaded["message"] and str(tmp_path / "hub") in loaded["message"]
