"""Reading a π-Flow adapter in the released format (fixtures/official/README.md).

An adapter directory holds ``config.json`` (``_class_name`` + the model's config) and
``diffusion_pytorch_model.safetensors`` whose metadata key ``policy_config`` is JSON
(``{"type": "GMFlow"}``, or ``{"type": "DX", …kwargs}``). Its keys are LoRA pairs
``<module>.lora_A.weight`` / ``<module>.lora_B.weight`` on the base's modules, plus replacement weights
(``norm_out.*``, the GM heads, or a DX student's ``proj_out``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import AdapterError, UnsupportedAdapterError

ADAPTER_WEIGHTS = "diffusion_pytorch_model.safetensors"
CONFIG = "config.json"

POLICY_TYPES = {"GMFlow": "gm", "DX": "dx"}
"""``policy_config.type`` → the policy piflow builds; the official names."""

POLICY_KWARGS = {
    # GMFlowPolicy(denoising_output, x_t_src, sigma_t_src, checkpointing=True, eps=1e-6)
    "gm": {"eps", "checkpointing"},
    # DXPolicy(denoising_output, x_t_src, sigma_t_src, segment_size=1.0, shift=1.0, mode='grid', eps=1e-4)
    "dx": {"eps", "segment_size", "shift", "mode"},
}


@dataclass
class AdapterFiles:
    """An adapter as read from disk: its config, policy and tensors split by role."""

    directory: Path
    config: dict
    class_name: str
    policy_type: str
    """``gm`` or ``dx``"""
    policy_kwargs: dict
    lora: dict[str, torch.Tensor] = field(default_factory=dict)
    """``<module>.lora_A.weight`` / ``<module>.lora_B.weight``"""
    replacements: dict[str, torch.Tensor] = field(default_factory=dict)
    """every other key: weights that replace or extend the base's"""


def read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise AdapterError(f"{what}: {path} is missing") from None
    except (OSError, ValueError) as error:
        raise AdapterError(f"{what}: {path} is not readable JSON ({error})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("_class_name"), str):
        raise AdapterError(f"{what}: {path} has no _class_name")
    return doc


def parse_policy_config(raw: str | None, path: Path) -> tuple[str, dict]:
    """(``gm``|``dx``, kwargs) from the ``policy_config`` metadata; unknown types or kwargs are refused."""
    if raw is None:
        raise AdapterError(f"adapter: {path} has no policy_config metadata (is it a π-Flow adapter?)")
    try:
        doc = json.loads(raw)
    except ValueError as error:
        raise AdapterError(f"adapter: policy_config of {path} is not JSON ({error})") from None
    if not isinstance(doc, dict):
        raise AdapterError(f"adapter: policy_config of {path} must be a JSON object")
    kwargs = dict(doc)
    name = kwargs.pop("type", None)
    if name not in POLICY_TYPES:
        raise UnsupportedAdapterError(
            f"adapter: policy type {name!r} is not supported; supported: {', '.join(POLICY_TYPES)}"
        )
    policy_type = POLICY_TYPES[name]
    unknown = sorted(set(kwargs) - POLICY_KWARGS[policy_type])
    if unknown:
        raise UnsupportedAdapterError(
            f"adapter: {name} policy_config has unsupported keys {unknown}; supported: {sorted(POLICY_KWARGS[policy_type])}"
        )
    return policy_type, kwargs


def read_adapter(directory: Path, dtype: torch.dtype) -> AdapterFiles:
    """Reads config, policy and tensors (cast to ``dtype``, on the CPU) of an adapter directory."""
    config = read_json(directory / CONFIG, "adapter")
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise AdapterError(f"adapter: {weights} is missing")
    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key).to(dtype) for key in f.keys()}
    except (SafetensorError, OSError) as error:
        raise AdapterError(f"adapter: {weights} is not a readable safetensors file ({error})") from None
    policy_type, policy_kwargs = parse_policy_config(metadata.get("policy_config"), weights)
    adapter = AdapterFiles(directory, config, config["_class_name"], policy_type, policy_kwargs)
    for key, tensor in tensors.items():
        if ".lora_A." in key or ".lora_B." in key:
            adapter.lora[key] = tensor
        elif "lora" in key:
            raise UnsupportedAdapterError(
                f"adapter: key {key!r} is a LoRA tensor piflow does not know (supported: lora_A / lora_B weights)"
            )
        else:
            adapter.replacements[key] = tensor
    return adapter
