"""piflow_torch.sampler.sample over loaded fixture students: batching, progress, cancellation, errors,
and a DX student built in the released format (the official fixtures are GM only)."""

from __future__ import annotations

import json

import pytest
import torch
from adapter_fixtures import FLUX, QWEN, WEIGHTS, copy_case
from safetensors.torch import load_file, save_file

from piflow_torch.adapters import load_student, pack_latents
from piflow_torch.errors import Cancelled, ConditioningError, PolicyOptionError, PolicyShapeError
from piflow_torch.noise import randn_batch
from piflow_torch.policy import DxOutput, build_schedule
from piflow_torch.sampler import SamplerSettings, sample

FLUX_IO = load_file(str(FLUX / "io.safetensors"))
QWEN_IO = load_file(str(QWEN / "io.safetensors"))
SETTINGS = SamplerSettings(nfe=4, substep_rule="ceil", guidance=3.5)


@pytest.fixture(scope="module")
def flux():
    return load_student(FLUX / "base", FLUX / "adapter", dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def qwen():
    return load_student(QWEN / "base", QWEN / "adapter", dtype=torch.float32, device="cpu")


def _flux_cond(batch=1):
    return {
        "prompt_embeds": FLUX_IO["prompt_embeds"].expand(batch, -1, -1),
        "pooled_prompt_embeds": FLUX_IO["pooled_prompt_embeds"].expand(batch, -1),
    }


def _count_forwards(student):
    calls = []
    handle = student.transformer.register_forward_hook(lambda _m, _i, _o: calls.append(1))
    return calls, handle


def test_a_batch_gives_each_image_what_it_gets_alone(flux):
    noise = randn_batch([3, 4], (16, 8, 16))
    calls, handle = _count_forwards(flux)
    try:
        both = sample(flux, noise, _flux_cond(2), SETTINGS)
    finally:
        handle.remove()
    assert len(calls) == SETTINGS.nfe  # one shared forward per NFE for the whole batch
    for b in range(2):
        alone = sample(flux, noise[b : b + 1], _flux_cond(1), SETTINGS)
        assert (both[b : b + 1] - alone).abs().max() < 1e-5


def test_on_step_sees_every_nfe_and_nfe_8_takes_8_forwards(flux):
    seen = []
    settings = SamplerSettings(nfe=8, substep_rule="round", guidance=3.5)
    out = sample(flux, randn_batch([1], (16, 8, 16)), _flux_cond(), settings, on_step=lambda k, x: seen.append((k, x.clone())))
    assert [k for k, _ in seen] == list(range(8))
    assert torch.equal(seen[-1][1], out)
    assert not torch.equal(seen[0][1], seen[1][1])


def test_should_stop_cancels_between_nfes(flux):
    calls, handle = _count_forwards(flux)
    steps = []
    try:
        with pytest.raises(Cancelled) as stopped:
            sample(
                flux,
                randn_batch([1], (16, 8, 16)),
                _flux_cond(),
                SETTINGS,
                on_step=lambda k, _x: steps.append(k),
                should_stop=lambda: len(steps) == 2,
            )
    finally:
        handle.remove()
    assert stopped.value.completed_steps == 2 and stopped.value.code == "cancelled"
    assert len(calls) == 2  # no forward after the stop


def test_qwen_batches_prompts_of_different_lengths_padded_with_a_mask(qwen):
    embeds, mask = QWEN_IO["prompt_embeds"], QWEN_IO["prompt_embeds_mask"]
    noise = randn_batch([11, 12], (16, 8, 12))
    settings = SamplerSettings(nfe=4, substep_rule="ceil")
    short = {"prompt_embeds": embeds[:, :4], "prompt_embeds_mask": mask[:, :4]}
    padded_embeds = torch.cat([embeds, torch.cat([embeds[:, :4], torch.zeros(1, 2, embeds.shape[2])], dim=1)])
    padded_mask = torch.cat([mask, torch.tensor([[1.0, 1, 1, 1, 0, 0]])])
    both = sample(qwen, noise, {"prompt_embeds": padded_embeds, "prompt_embeds_mask": padded_mask}, settings)
    alone = sample(qwen, noise[1:], short, settings)
    assert (both[1:] - alone).abs().max() < 1e-4
    first = sample(qwen, noise[:1], {"prompt_embeds": embeds, "prompt_embeds_mask": mask}, settings)
    assert (both[:1] - first).abs().max() < 1e-5


def test_bad_inputs_fail_before_any_forward(flux, qwen):
    calls, handle = _count_forwards(flux)
    try:
        with pytest.raises(PolicyShapeError, match="noise must be"):
            sample(flux, torch.zeros(1, 4, 8, 16), _flux_cond(), SETTINGS)
        with pytest.raises(PolicyShapeError, match="even"):
            sample(flux, torch.zeros(1, 16, 7, 16), _flux_cond(), SETTINGS)
        with pytest.raises(ConditioningError, match="set SamplerSettings.guidance"):
            sample(flux, torch.zeros(1, 16, 8, 16), _flux_cond(), SamplerSettings(nfe=4, substep_rule="ceil"))
        with pytest.raises(ConditioningError, match="shape \\(2, S, 32\\)"):
            sample(flux, torch.zeros(2, 16, 8, 16), _flux_cond(1), SETTINGS)
    finally:
        handle.remove()
    assert calls == []
    with pytest.raises(ConditioningError, match="no guidance embedding"):
        sample(qwen, torch.zeros(1, 16, 8, 12), {"prompt_embeds": QWEN_IO["prompt_embeds"]}, SETTINGS)


@pytest.mark.parametrize(
    "kwargs",
    [{"nfe": 0, "substep_rule": "ceil"}, {"nfe": 4, "substep_rule": "floor"}, {"nfe": 4, "substep_rule": "ceil", "temperature": -1}],
)
def test_settings_are_validated(kwargs):
    with pytest.raises(PolicyOptionError):
        SamplerSettings(**kwargs)


def test_substep_rules_differ_only_in_the_last_step_at_4_nfe():
    counts = {rule: [s.num_substeps for s in build_schedule(4, shift=3.2, final_step_size_scale=0.5, substep_rule=rule).steps] for rule in ("round", "ceil")}
    assert counts == {"round": [37, 37, 37, 18], "ceil": [37, 37, 37, 19]}


# --- a DX student in the released format: the base's own class with proj_out sized for N nodes ---

DX_N = 3


@pytest.fixture(scope="module")
def dx_case(tmp_path_factory):
    case = copy_case(FLUX, tmp_path_factory.mktemp("dx") / "case")
    adapter = case / "adapter"
    base_config = json.loads((case / "base/transformer/config.json").read_text())
    config = {**base_config, "out_channels": DX_N * 64}
    (adapter / "config.json").write_text(json.dumps(config))
    inner = base_config["num_attention_heads"] * base_config["attention_head_dim"]
    gen = torch.Generator().manual_seed(5)
    old = load_file(str(adapter / WEIGHTS))
    tensors = {k: v for k, v in old.items() if ".lora_" in k}
    tensors["norm_out.linear.weight"] = old["norm_out.linear.weight"]
    tensors["norm_out.linear.bias"] = old["norm_out.linear.bias"]
    tensors["proj_out.weight"] = torch.randn(DX_N * 64, inner, generator=gen) * 0.05
    tensors["proj_out.bias"] = torch.randn(DX_N * 64, generator=gen) * 0.05
    policy = {"type": "DX", "segment_size": 1 / 3.5, "shift": 3.2, "mode": "grid"}
    save_file(tensors, str(adapter / WEIGHTS), metadata={"policy_config": json.dumps(policy)})
    return case


def test_a_dx_student_loads_with_its_policy_config_and_unpacks_as_the_official_pipeline(dx_case):
    student = load_student(dx_case / "base", dx_case / "adapter", dtype=torch.float32, device="cpu")
    assert (student.policy_type, student.k) == ("dx", DX_N)
    assert student.dx_options.segment_size == pytest.approx(1 / 3.5) and student.dx_options.mode == "grid"
    x = FLUX_IO["noise"]
    cond = {**_flux_cond(), "guidance": torch.tensor([3.5])}
    out = student.forward(x, 1.0, cond)
    assert isinstance(out, DxOutput) and tuple(out.grid_u.shape) == (1, DX_N, 16, 8, 16)
    raw = student.forward_raw(pack_latents(x), 1.0, cond, height=4, width=8)["grid"]
    # PiFluxPipeline's DX path: _unpack_latents of (B, seq, N·64), then reshape(B, N, 16, H, W)
    official = raw.view(1, 4, 8, DX_N * 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, DX_N * 16, 8, 16)
    assert torch.equal(out.grid_u, official.reshape(1, DX_N, 16, 8, 16))
    latents = sample(student, randn_batch([2], (16, 8, 16)), _flux_cond(), SETTINGS)
    assert latents.shape == (1, 16, 8, 16) and bool(torch.isfinite(latents).all())


def test_a_dx_adapter_without_its_output_layer_is_refused(dx_case, tmp_path):
    from piflow_torch.errors import AdapterError

    case = copy_case(dx_case, tmp_path / "case")
    tensors = load_file(str(case / "adapter" / WEIGHTS))
    del tensors["proj_out.weight"]
    save_file(tensors, str(case / "adapter" / WEIGHTS), metadata={"policy_config": json.dumps({"type": "DX"})})
    with pytest.raises(AdapterError, match="needs proj_out.weight"):
        load_student(case / "base", case / "adapter", dtype=torch.float32, device="cpu")
