"""``npm run conformance:official`` (piflow_torch.conformance.official) as a real process: it passes on the
repository's copy of the official cases and fails on corrupted ones (a weight, a recorded output, the
substep rule)."""

from __future__ import annotations

import json

import torch
from adapter_fixtures import FLUX, QWEN, copy_case, rewrite_adapter
from conftest import OFFICIAL_DIR, closing_counts, run_module
from safetensors.torch import load_file, save_file

RUNNER = "piflow_torch.conformance.official"


def test_every_official_case_passes_load_replay_and_sampler():
    result = run_module(RUNNER)  # default directory: fixtures/official
    assert result.returncode == 0, result.stdout + result.stderr
    cases = sorted(p.parent.name for p in OFFICIAL_DIR.glob("*/case.json"))
    assert closing_counts(result.stdout)[:2] == (3 * len(cases), 0)
    for name in cases:
        for part in ("load", "replay", "sampler"):
            assert f"PASS {name} {part}" in result.stdout


def test_the_directory_comes_from_the_environment(tmp_path):
    copy_case(QWEN, tmp_path / "only_qwen")
    result = run_module(RUNNER, "-v", env={"PIFLOW_OFFICIAL_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout
    assert closing_counts(result.stdout)[:2] == (3, 0)
    assert "final_latents_packed" in result.stdout


def test_a_corrupted_adapter_weight_fails_replay_and_sampler(tmp_path):
    case = copy_case(FLUX, tmp_path / "cases" / "flux")

    def nudge(tensors):
        tensors["transformer_blocks.0.ff.net.2.lora_B.weight"] += 0.05

    rewrite_adapter(case / "adapter", nudge)
    result = run_module(RUNNER, "--dir", str(tmp_path / "cases"))
    assert result.returncode == 1
    assert "PASS flux load" in result.stdout
    assert "FAIL flux replay" in result.stdout
    assert "FAIL flux sampler" in result.stdout


def test_a_corrupted_recorded_output_fails_replay_only(tmp_path):
    case = copy_case(QWEN, tmp_path / "cases" / "qwen")
    io = load_file(str(case / "io.safetensors"))
    io["step2.out.logweights"][0, 5, 3, 1] += 0.001  # 10× the tolerance, one value
    save_file(io, str(case / "io.safetensors"))
    result = run_module(RUNNER, "--dir", str(tmp_path / "cases"))
    assert result.returncode == 1
    assert "FAIL step2.out.logweights: 1/768 values out of tolerance" in result.stdout
    assert "PASS qwen sampler" in result.stdout


def test_the_other_substep_rule_misses_the_official_latents(tmp_path):
    case = copy_case(FLUX, tmp_path / "cases" / "flux")
    meta = json.loads((case / "case.json").read_text())
    meta["substep_rule"] = "round"  # what v0.1 did; these cases were made by v0.2's ceil
    (case / "case.json").write_text(json.dumps(meta))
    result = run_module(RUNNER, "--dir", str(tmp_path / "cases"))
    assert result.returncode == 1
    assert "FAIL flux sampler" in result.stdout
    assert "PASS flux replay" in result.stdout


def test_an_unsupported_adapter_fails_with_the_supported_names(tmp_path):
    case = copy_case(QWEN, tmp_path / "cases" / "qwen2")
    rewrite_adapter(case / "adapter", edit_config=lambda c: c.update(_class_name="GMFlux2Transformer2DModel"))
    result = run_module(RUNNER, "--dir", str(tmp_path / "cases"))
    assert result.returncode == 1
    assert "UnsupportedAdapterError" in result.stdout and "GMQwenImageTransformer2DModel" in result.stdout
    assert closing_counts(result.stdout)[:2] == (0, 1)


def test_an_empty_or_missing_directory_fails(tmp_path):
    assert run_module(RUNNER, "--dir", str(tmp_path)).returncode == 1
    assert run_module(RUNNER, "--dir", str(tmp_path / "absent")).returncode == 1


def test_noise_from_the_project_generator_runs_the_same_path():
    """The sampler from Philox noise (the serving path) on a fixture: a deterministic, finite image."""
    from adapter_fixtures import FLUX as case

    from piflow_torch.adapters import load_student
    from piflow_torch.noise import randn_batch
    from piflow_torch.sampler import SamplerSettings, sample

    student = load_student(case / "base", case / "adapter", dtype=torch.float32, device="cpu")
    io = load_file(str(case / "io.safetensors"))
    cond = {"prompt_embeds": io["prompt_embeds"], "pooled_prompt_embeds": io["pooled_prompt_embeds"]}
    settings = SamplerSettings(nfe=4, substep_rule="ceil", guidance=3.5)
    first = sample(student, randn_batch([7], (16, 8, 16)), cond, settings)
    again = sample(student, randn_batch([7], (16, 8, 16)), cond, settings)
    assert torch.equal(first, again) and bool(torch.isfinite(first).all())
