"""``npm run conformance:torch`` (piflow_torch.conformance.golden): as a real process on the repository's
golden copy, in-process (the same ``main``) on other directories and corrupted copies, which must fail."""

from __future__ import annotations

import json
import shutil

from conftest import GOLDEN_DIR, closing_counts, requires_cuda, run_module

from piflow_torch.conformance import golden


def _run(capsys, *args: str) -> tuple[int, str]:
    code = golden.main(list(args))
    return code, capsys.readouterr().out


def test_every_golden_case_passes_in_float64_and_float32():
    result = run_module("piflow_torch.conformance.golden", "--dir", str(GOLDEN_DIR))  # as npm runs it
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    passed, failed, skipped = closing_counts(out)
    covered = [c for c in json.loads((GOLDEN_DIR / "index.json").read_text())["cases"]]
    not_covered = [c for c in covered if c["kind"] in ("train_sample_t", "piid_segment")]
    assert failed == 0
    assert passed == 2 * (len(covered) - len(not_covered))
    assert skipped == len(not_covered)
    for case in not_covered:  # reported by name, never counted as passed
        assert f"SKIP {case['id']} [{case['kind']}]: not covered" in out


def test_the_golden_dir_comes_from_the_environment(tmp_path, capsys, monkeypatch):
    target = tmp_path / "golden"
    target.mkdir()
    shutil.copy(GOLDEN_DIR / "gm_k2_mid.json", target / "gm_k2_mid.json")
    monkeypatch.setenv("PIFLOW_GOLDEN_DIR", str(target))
    code, out = _run(capsys)
    assert code == 0, out
    assert closing_counts(out) == (2, 0, 0)


def test_a_corrupted_expectation_fails_both_dtypes(tmp_path, capsys):
    doc = json.loads((GOLDEN_DIR / "rollout_gm_k8_step0_4nfe.json").read_text())
    doc["expected"]["x_dst"]["data"][3] += 0.01
    (tmp_path / "rollout_gm_k8_step0_4nfe.json").write_text(json.dumps(doc))
    code, out = _run(capsys, "--dir", str(tmp_path))
    assert code == 1
    assert closing_counts(out) == (0, 2, 0)
    assert "FAIL x_dst: 1/8 values out of tolerance" in out


def test_a_wrong_substep_count_fails_exactly(tmp_path, capsys):
    doc = json.loads((GOLDEN_DIR / "sched_4nfe_shift3p2_fs0p5.json").read_text())
    doc["expected"]["substeps_per_step"][3] += 1
    (tmp_path / "sched.json").write_text(json.dumps(doc))
    code, out = _run(capsys, "--dir", str(tmp_path), "--dtype", "float64")
    assert code == 1
    assert "substeps_per_step: 1/4 values differ (exact)" in out


def test_an_unknown_kind_is_a_failure_not_a_pass(tmp_path, capsys):
    doc = json.loads((GOLDEN_DIR / "gm_k2_mid.json").read_text())
    doc["kind"] = "gm_velocity_v2"
    (tmp_path / "new_kind.json").write_text(json.dumps(doc))
    code, out = _run(capsys, "--dir", str(tmp_path))
    assert code == 1
    assert "unknown case kind" in out
    assert closing_counts(out) == (0, 2, 0)


def test_a_missing_directory_fails_loudly(tmp_path, capsys):
    code, out = _run(capsys, "--dir", str(tmp_path / "absent"))
    assert code == 1
    assert "golden directory not found" in out


@requires_cuda
def test_every_golden_case_passes_on_cuda(capsys):
    code, out = _run(capsys, "--dir", str(GOLDEN_DIR), "--device", "cuda")
    assert code == 0, out
