"""The real download path, offline: manifests that name Hub repo ids resolve from a Hugging Face cache
(`HF_HUB_CACHE`, `HF_HUB_OFFLINE=1`) laid out as `huggingface_hub` writes it, and the server serves them."""

from __future__ import annotations

import base64
import json
import shutil

from conftest import BACKEND_ROOT, OFFICIAL_DIR
from support import ServerProcess, generate, rgb

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache, repo_id: str, fill):
    """A snapshot of `repo_id` in the cache layout (refs/main → snapshots/<commit>/…)."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    fill(snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)


def test_a_manifest_of_hub_repo_ids_loads_from_the_offline_cache_and_generates(tmp_path):
    cache = tmp_path / "hub"
    base_src = BACKEND_ROOT / "fixtures" / "bases" / "piflux-tiny"
    _cache_repo(cache, "piflow-test/tiny-flux-base",
                lambda snap: shutil.copytree(base_src, snap, symlinks=False))
    _cache_repo(cache, "piflow-test/pi-tiny-flux",
                lambda snap: shutil.copytree(OFFICIAL_DIR / "piflux_gm_k8_tiny" / "adapter", snap / "gmflux_k8_tiny"))
    raw = json.loads((BACKEND_ROOT / "fixtures" / "manifests" / "piflux-tiny.json").read_text())
    raw.update(id="hub-flux-tiny", base={"repo": "piflow-test/tiny-flux-base"},
               adapter={"repo": "piflow-test/pi-tiny-flux", "subfolder": "gmflux_k8_tiny"})
    manifest = tmp_path / "hub-flux-tiny.json"
    manifest.write_text(json.dumps(raw))

    server = ServerProcess("--model", str(manifest),
                           env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")})
    try:
        assert server.url, server.stderr()
        with server.client() as client:
            events = generate(client, "hub-flux-tiny", {"prompt": "a red apple", "seed": 3, "width": 32, "height": 48})
        image = next(e for e in events if e["type"] == "image")
        assert rgb(base64.b64decode(image["data"])).shape == (48, 32, 3)
    finally:
        assert server.stop() == 0, server.stderr()


def test_a_repo_missing_from_the_offline_cache_is_a_start_up_error(tmp_path):
    raw = json.loads((BACKEND_ROOT / "fixtures" / "manifests" / "piflux-tiny.json").read_text())
    raw.update(id="hub-missing", base={"repo": "piflow-test/not-cached"})
    manifest = tmp_path / "hub-missing.json"
    manifest.write_text(json.dumps(raw))
    server = ServerProcess("--model", str(manifest),
                           env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert server.url is None and server.stop() == 1
    assert "cannot serve" in server.stderr() and "piflow-test/not-cached" in server.stderr()
