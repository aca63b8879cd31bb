"""``npm run conformance:torch`` (piflow_torch.conformance.golden) as a real process, on the repository's
golden copy and on corrupted copies, which must fail."""

from __future__ import annotations

import json
import shutil

from conftest import GOLDEN_DIR, closing_counts, run_module


def test_every_golden_case_passes_in_float64_and_float32():
    result = run_module("piflow_torch.conformance.golden", "--dir", str(GOLDEN_DIR))
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed, skipped = closing_counts(result.stdout)
    covered = [c for c in json.loads((GOLDEN_DIR / "index.json").read_text())["cases"]]
    not_covered = [c for c in covered if c["kind"] in ("train_sample_t", "piid_segment")]
    assert failed == 0
    assert passed == 2 * (len(covered) - len(not_covered))
    assert skipped == len(not_covered)
    for case in not_covered:  # reported by name, never counted as passed
        assert f"SKIP {case['id']} [{case['kind']}]: not covered" in result.stdout


def test_the_golden_dir_comes_from_the_environment(tmp_path):
    target = tmp_path / "golden"
    target.mkdir()
    shutil.copy(GOLDEN_DIR / "gm_k2_mid.json", target / "gm_k2_mid.json")
    result = run_module("piflow_torch.conformance.golden", env={"PIFLOW_GOLDEN_DIR": str(target)})
    assert result.returncode == 0, result.stdout
    assert closing_counts(result.stdout) == (2, 0, 0)


def test_a_corrupted_expectation_fails_both_dtypes(tmp_path):
    doc = json.loads((GOLDEN_DIR / "rollout_gm_k8_step0_4nfe.json").read_text())
    doc["expected"]["x_dst"]["data"][3] += 0.01
    (tmp_path / "rollout_gm_k8_step0_4nfe.json").write_text(json.dumps(doc))
    result = run_module("piflow_torch.conformance.golden", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert closing_counts(result.stdout) == (0, 2, 0)
    assert "FAIL x_dst: 1/8 values out of tolerance" in result.stdout


def test_a_wrong_substep_count_fails_exactly(tmp_path):
    doc = json.loads((GOLDEN_DIR / "sched_4nfe_shift3p2_fs0p5.json").read_text())
    doc["expected"]["substeps_per_step"][3] += 1
    (tmp_path / "sched.json").write_text(json.dumps(doc))
    result = run_module("piflow_torch.conformance.golden", "--dir", str(tmp_path), "--dtype", "float64")
    assert result.returncode == 1
    assert "substeps_per_step: 1/4 values differ (exact)" in result.stdout


def test_an_unknown_kind_is_a_failure_not_a_pass(tmp_path):
    doc = json.loads((GOLDEN_DIR / "gm_k2_mid.json").read_text())
    doc["kind"] = "gm_velocity_v2"
    (tmp_path / "new_kind.json").write_text(json.dumps(doc))
    result = run_module("piflow_torch.conformance.golden", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "unknown case kind" in result.stdout
    assert closing_counts(result.stdout) == (0, 2, 0)


def test_a_missing_directory_fails_loudly(tmp_path):
    result = run_module("piflow_torch.conformance.golden", "--dir", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "golden directory not found" in result.stdout
