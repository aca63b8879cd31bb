"""load_student on the official fixtures: attributes, dtypes, LoRA scale, and every refusal path."""

from __future__ import annotations

import json

import pytest
import torch
from adapter_fixtures import FLUX, QWEN, copy_case, read_adapter, rewrite_adapter
from safetensors.torch import load_file

from piflow_torch.adapters import SUPPORTED_ADAPTER_CLASSES, load_student, pack_latents, unpack_latents
from piflow_torch.adapters.lora import ADAPTER_NAME
from piflow_torch.errors import AdapterError, ConditioningError, ModelNotFoundError, UnsupportedAdapterError


def _load(case, **kwargs):
    return load_student(case / "base", case / "adapter", dtype=kwargs.pop("dtype", torch.float32), device="cpu", **kwargs)


def _flux_cond(io, step=0):
    return {"prompt_embeds": io["prompt_embeds"], "pooled_prompt_embeds": io["pooled_prompt_embeds"], "guidance": io[f"step{step}.guidance"]}


def test_flux_student_attributes_and_lora_layers():
    student = _load(FLUX)
    assert (student.kind, student.policy_type, student.k, student.latent_channels, student.patch_size) == ("flux", "gm", 8, 16, 2)
    assert student.uses_guidance
    lora = [n for n, _ in student.transformer.named_parameters() if f".{ADAPTER_NAME}." in n]
    tensors, _ = read_adapter(FLUX / "adapter")
    assert len(lora) == sum(".lora_" in k for k in tensors)


def test_qwen_student_attributes():
    student = _load(QWEN)
    assert (student.kind, student.policy_type, student.k, student.uses_guidance) == ("qwen", "gm", 8, False)
    assert student.conditioning_names == ("prompt_embeds", "prompt_embeds_mask")


# σ = 0.5: the model embeds 1000·σ in its own dtype (as the official one does), and 888.9 rounds to 889
# in float16, which alone moves this random tiny model's outputs by 1 %; 500 is exact. bfloat16 keeps 8
# mantissa bits: close on average, not elementwise.
@pytest.mark.parametrize(("dtype", "mean_rel"), [(torch.bfloat16, 0.15), (torch.float16, 0.005)])
def test_half_precision_students_agree_with_float32(dtype, mean_rel):
    io = load_file(str(FLUX / "io.safetensors"))
    x = unpack_latents(io["step1.hidden_states"], 4, 8)
    ref = _load(FLUX).forward(x, 0.5, _flux_cond(io, 1))
    student = _load(FLUX, dtype=dtype)
    assert next(student.transformer.parameters()).dtype == dtype
    lora_dtypes = {p.dtype for n, p in student.transformer.named_parameters() if ADAPTER_NAME in n}
    assert lora_dtypes == {dtype}
    out = student.forward(x, 0.5, _flux_cond(io, 1))
    assert out.means_u.dtype == torch.float32  # the policy always gets float32
    assert (out.means_u - ref.means_u).abs().mean() < mean_rel * ref.means_u.abs().mean()


def test_mixed_lora_ranks_keep_scale_one(tmp_path):
    case = copy_case(FLUX, tmp_path / "case")
    module = "transformer_blocks.0.ff.net.2"

    def shrink(tensors):
        tensors[f"{module}.lora_A.weight"] = tensors[f"{module}.lora_A.weight"][:2].contiguous()
        tensors[f"{module}.lora_B.weight"] = tensors[f"{module}.lora_B.weight"][:, :2].contiguous()

    rewrite_adapter(case / "adapter", shrink)
    student = _load(case)
    layer = dict(student.transformer.named_modules())[module]
    a = layer.lora_A[ADAPTER_NAME].weight
    b = layer.lora_B[ADAPTER_NAME].weight
    assert a.shape[0] == 2 and layer.scaling[ADAPTER_NAME] == 1.0
    x = torch.randn(3, layer.in_features)
    expected = x @ (layer.base_layer.weight + b @ a).T + layer.base_layer.bias
    assert torch.allclose(layer(x), expected, atol=1e-5)
    other = dict(student.transformer.named_modules())["transformer_blocks.0.ff.net.0.proj"]
    assert other.lora_A[ADAPTER_NAME].weight.shape[0] == 4 and other.scaling[ADAPTER_NAME] == 1.0


def test_an_unsupported_adapter_class_names_the_supported_ones(tmp_path):
    case = copy_case(FLUX, tmp_path / "case")
    rewrite_adapter(case / "adapter", edit_config=lambda c: c.update(_class_name="GMFlux2Transformer2DModel"))
    with pytest.raises(UnsupportedAdapterError) as error:
        _load(case)
    assert "GMFlux2Transformer2DModel" in str(error.value)
    for name in SUPPORTED_ADAPTER_CLASSES:
        assert name in str(error.value)
    assert error.value.code == "adapter_unsupported"


def test_an_unsupported_policy_type_names_the_supported_ones(tmp_path):
    case = copy_case(FLUX, tmp_path / "case")
    rewrite_adapter(case / "adapter", metadata={"policy_config": json.dumps({"type": "Gaussian"})})
    with pytest.raises(UnsupportedAdapterError, match="'Gaussian' is not supported; supported: GMFlow, DX"):
        _load(case)


def test_missing_policy_config_and_unknown_policy_kwargs_are_refused(tmp_path):
    case = copy_case(FLUX, tmp_path / "case")
    rewrite_adapter(case / "adapter", metadata={})
    with pytest.raises(AdapterError, match="no policy_config"):
        _load(case)
    rewrite_adapter(case / "adapter", metadata={"policy_config": json.dumps({"type": "GMFlow", "temperature": 0.5})})
    with pytest.raises(UnsupportedAdapterError, match="unsupported keys \\['temperature'\\]"):
        _load(case)


def test_an_adapter_for_another_base_is_refused(tmp_path):
    with pytest.raises(AdapterError, match="needs a FluxTransformer2DModel base, got QwenImageTransformer2DModel"):
        load_student(QWEN / "base", FLUX / "adapter", dtype=torch.float32, device="cpu")
    case = copy_case(FLUX, tmp_path / "case")
    rewrite_adapter(case / "adapter", edit_config=lambda c: c.update(num_layers=2))
    with pytest.raises(AdapterError, match="num_layers = 2 but the base has 1"):
        _load(case)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("proj_out_logstds.3.bias"), "output-layer weights \\['norm_out.logstds.3.bias'\\] are missing"),
        (lambda t: t.update({"proj_out_extra.weight": torch.zeros(2, 2)}), "match no parameter"),
        (lambda t: t.update({"proj_out_means.bias": torch.zeros(7)}), "has shape \\(7,\\)"),
        (lambda t: t.pop("transformer_blocks.0.ff.net.2.lora_B.weight"), "needs a 2-D lora_A.weight and lora_B.weight pair"),
        (
            lambda t: t.update({"transformer_blocks.9.ff.net.2.lora_A.weight": torch.zeros(4, 128), "transformer_blocks.9.ff.net.2.lora_B.weight": torch.zeros(32, 4)}),
            "do not exist in the base",
        ),
        (lambda t: t.update({"x.lora_magnitude_vector": torch.zeros(3)}), "LoRA tensor piflow does not know"),
    ],
    ids=["missing-head", "unknown-key", "wrong-shape", "half-lora-pair", "lora-target-missing", "dora"],
)
def test_adapter_keys_that_do_not_fit_are_refused(tmp_path, edit, message):
    case = copy_case(FLUX, tmp_path / "case")
    rewrite_adapter(case / "adapter", edit)
    with pytest.raises(AdapterError, match=message):
        _load(case)


def test_missing_directories_and_bad_names(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no directory"):
        load_student(tmp_path / "absent", FLUX / "adapter", device="cpu")
    with pytest.raises(ModelNotFoundError, match="has no subfolder 'transformer'"):
        load_student(FLUX / "adapter", FLUX / "adapter", device="cpu")
    with pytest.raises(ModelNotFoundError, match="neither a directory nor a Hugging Face repo id"):
        load_student("not a repo!", FLUX / "adapter", device="cpu")
    with pytest.raises(UnsupportedAdapterError, match="supported: bf16, fp16, fp32"):
        load_student(FLUX / "base", FLUX / "adapter", dtype=torch.float64)


def test_conditioning_errors_are_typed():
    student = _load(FLUX)
    io = load_file(str(FLUX / "io.safetensors"))
    x = unpack_latents(io["step0.hidden_states"], 4, 8)
    with pytest.raises(ConditioningError, match="needs 'guidance'"):
        student.forward(x, 1.0, {"prompt_embeds": io["prompt_embeds"], "pooled_prompt_embeds": io["pooled_prompt_embeds"]})
    with pytest.raises(ConditioningError, match="'pooled_prompt_embeds' must have shape \\(1, 16\\)"):
        student.forward(x, 1.0, {**_flux_cond(io), "pooled_prompt_embeds": torch.zeros(1, 17)})
    with pytest.raises(ConditioningError, match="unknown conditioning \\['prompt_embeds_mask'\\]"):
        student.forward(x, 1.0, {**_flux_cond(io), "prompt_embeds_mask": torch.ones(1, 7)})


def test_pack_and_unpack_are_inverse_and_match_the_recorded_packing():
    io = load_file(str(FLUX / "io.safetensors"))
    assert torch.equal(pack_latents(io["noise"]), io["noise_packed"])
    assert torch.equal(unpack_latents(io["noise_packed"], 4, 8), io["noise"])
