"""``npm run conformance:official`` (piflow_torch.conformance.official): as a real process on the
repository's copy of the official cases, and in-process (the same ``main``; one interpreter start per
test is what makes these slow) on corrupted copies (a weight, a recorded output, the substep rule, an
unsupported class), which must fail."""

from __future__ import annotations

import json

from adapter_fixtures import FLUX, QWEN, copy_case, rewrite_adapter
from conftest import OFFICIAL_DIR, closing_counts, requires_cuda, run_module

from piflow_torch.conformance import official
from safetensors.torch import load_file, save_file

RUNNER = "piflow_torch.conformance.official"


def _run(capsys, *args: str) -> tuple[int, str]:
    code = official.main(list(args))
    return code, capsys.readouterr().out


def test_every_official_case_passes_load_replay_and_sampler():
    result = run_module(RUNNER)  # default directory: fixtures/official
    assert result.returncode == 0, result.stdout + result.stderr
    cases = sorted(p.parent.name for p in OFFICIAL_DIR.glob("*/case.json"))
    assert closing_counts(result.stdout)[:2] == (3 * len(cases), 0)
    for name in cases:
        for part in ("load", "replay", "sampler"):
            assert f"PASS {name} {part}" in result.stdout


def test_the_directory_comes_from_the_environment(tmp_path, capsys, monkeypatch):
    copy_case(QWEN, tmp_path / "only_qwen")
    monkeypatch.setenv("PIFLOW_OFFICIAL_DIR", str(tmp_path))
    code, out = _run(capsys, "-v")
    assert code == 0, out
    assert closing_counts(out)[:2] == (3, 0)
    assert "final_latents_packed" in out


def test_a_corrupted_adapter_weight_fails_replay_and_sampler(tmp_path, capsys):
    case = copy_case(FLUX, tmp_path / "cases" / "flux")

    def nudge(tensors):
        tensors["transformer_blocks.0.ff.net.2.lora_B.weight"] += 0.05

    rewrite_adapter(case / "adapter", nudge)
    code, out = _run(capsys, "--dir", str(tmp_path / "cases"))
    assert code == 1
    assert "PASS flux load" in out
    assert "FAIL flux replay" in out
    assert "FAIL flux sampler" in out


def test_a_corrupted_recorded_output_fails_replay_only(tmp_path, capsys):
    case = copy_case(QWEN, tmp_path / "cases" / "qwen")
    io = load_file(str(case / "io.safetensors"))
    io["step2.out.logweights"][0, 5, 3, 1] += 0.001  # 10× the tolerance, one value
    save_file(io, str(case / "io.safetensors"))
    code, out = _run(capsys, "--dir", str(tmp_path / "cases"))
    assert code == 1
    assert "FAIL step2.out.logweights: 1/768 values out of tolerance" in out
    assert "PASS qwen sampler" in out


def test_the_other_substep_rule_misses_the_official_latents(tmp_path, capsys):
    case = copy_case(FLUX, tmp_path / "cases" / "flux")
    meta = json.loads((case / "case.json").read_text())
    meta["substep_rule"] = "round"  # what v0.1 did; these cases were made by v0.2's ceil
    (case / "case.json").write_text(json.dumps(meta))
    code, out = _run(capsys, "--dir", str(tmp_path / "cases"))
    assert code == 1
    assert "FAIL flux sampler" in out
    assert "PASS flux replay" in out


def test_an_unsupported_adapter_fails_with_the_supported_names(tmp_path, capsys):
    case = copy_case(QWEN, tmp_path / "cases" / "qwen2")
    rewrite_adapter(case / "adapter", edit_config=lambda c: c.update(_class_name="GMFlux2Transformer2DModel"))
    code, out = _run(capsys, "--dir", str(tmp_path / "cases"))
    assert code == 1
    assert "UnsupportedAdapterError" in out and "GMQwenImageTransformer2DModel" in out
    assert closing_counts(out)[:2] == (0, 1)


def test_an_empty_or_missing_directory_fails(tmp_path, capsys):
    assert _run(capsys, "--dir", str(tmp_path))[0] == 1
    assert _run(capsys, "--dir", str(tmp_path / "absent"))[0] == 1



@requires_cuda
def test_every_official_case_passes_on_cuda(capsys):
    code, out = _run(capsys, "--device", "cuda")
    assert code == 0, out
