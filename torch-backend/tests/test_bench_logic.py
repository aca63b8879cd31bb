"""The GPU benchmark's code path (bench/torch_bench.py --profile small: a random FLUX.1-shaped base and a
released-format adapter written to disk, loaded by the real loader, timed against FluxPipeline) runs
end to end on a CPU at toy size, so bench/torch_gpu.sh's only untested part is the GPU itself."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import BACKEND_ROOT, REPO_ROOT


def test_the_small_profile_of_the_gpu_bench_runs_on_a_cpu(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "torch_bench.py"), "--profile", "small",
                          "--device", "cpu", "--size", "32", "--batches", "2", "--baseline-steps", "2",
                          "--repeats", "1", "--json", str(out)], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(BACKEND_ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["nfe"] == 4 and result["side"] == 32
    assert set(result["pi_flow"]) == {"1", "2"} and set(result["flux_pipeline"]) == {"2x1", "2x2"}
    assert result["pi_flow"]["2"]["images_per_s"] > 0 and result["pi_flow"]["1"]["forward_ms"] > 0
    assert "π-Flow / 2 steps" in run.stdout
