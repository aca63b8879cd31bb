"""Injecting an adapter's LoRA pairs into the base with peft (no diffusers loader in between).

Ranks are read per module from ``lora_A`` (r × in); the released format has no alpha tensors and uses
``lora_alpha = r`` (scale 1) for every module, so alpha follows each module's own rank. The LoRA layers
stay unmerged, as the official pipelines run them; they get the base's dtype and device.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

from ..errors import AdapterError

ADAPTER_NAME = "transformer_piflow"
"""The official adapter name (``{target_module_name}_piflow``)."""


def _module_ranks(lora: dict[str, torch.Tensor]) -> dict[str, int]:
    """Module name → rank, checking every module has one A (r × in) and one B (out × r) of one rank."""
    modules = sorted({key.split(".lora_")[0] for key in lora})
    ranks = {}
    for module in modules:
        a, b = lora.get(f"{module}.lora_A.weight"), lora.get(f"{module}.lora_B.weight")
        if a is None or b is None or a.dim() != 2 or b.dim() != 2:
            raise AdapterError(f"adapter: {module} needs a 2-D lora_A.weight and lora_B.weight pair")
        if a.shape[0] != b.shape[1]:
            raise AdapterError(f"adapter: {module} has lora_A rank {a.shape[0]} but lora_B rank {b.shape[1]}")
        ranks[module] = int(a.shape[0])
    extra = sorted(k for k in lora if k.split(".lora_")[0] not in ranks or not k.endswith(".weight"))
    if extra:
        raise AdapterError(f"adapter: unexpected LoRA keys {extra[:5]}")
    return ranks


def inject_lora(model: torch.nn.Module, lora: dict[str, torch.Tensor]) -> int:
    """Adds the LoRA layers to ``model`` in place and loads their weights; returns the module count.

    Raises:
        AdapterError: a pair is incomplete, a target module does not exist or is not a layer LoRA
            supports, or a weight's shape does not fit its module
    """
    if not lora:
        return 0
    ranks = _module_ranks(lora)
    names = dict(model.named_modules())
    missing = sorted(m for m in ranks if m not in names)
    if missing:
        raise AdapterError(f"adapter: LoRA targets {missing[:5]} do not exist in the base ({len(missing)} of {len(ranks)})")
    for module, rank in ranks.items():
        layer = names[module]
        a, b = lora[f"{module}.lora_A.weight"], lora[f"{module}.lora_B.weight"]
        if not isinstance(layer, torch.nn.Linear):
            raise AdapterError(f"adapter: LoRA target {module} is a {type(layer).__name__}, not a Linear layer")
        if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
            raise AdapterError(
                f"adapter: LoRA of {module} is {b.shape[0]}×{rank}×{a.shape[1]}, the layer {layer.out_features}×{layer.in_features}"
            )
    common = max(set(ranks.values()), key=list(ranks.values()).count)
    # full module names, anchored, so `transformer_blocks.0.ff.net.2` never matches inside another name
    pattern = {f"^{m.replace('.', '[.]')}$": r for m, r in ranks.items() if r != common}
    config = LoraConfig(
        r=common,
        lora_alpha=common,
        target_modules=sorted(ranks),
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        lora_dropout=0.0,
        init_lora_weights=False,
    )
    try:
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    except ValueError as error:
        raise AdapterError(f"adapter: peft could not add the LoRA layers ({error})") from None
    result = set_peft_model_state_dict(model, lora, adapter_name=ADAPTER_NAME)
    unexpected = [k for k in result.unexpected_keys if "lora" in k]
    if unexpected:
        raise AdapterError(f"adapter: LoRA weights not used by peft: {unexpected[:5]}")
    loaded = [n for n, _ in model.named_parameters() if f".{ADAPTER_NAME}." in n]
    if len(loaded) != 2 * len(ranks):
        raise AdapterError(f"adapter: peft made {len(loaded)} LoRA tensors for {len(ranks)} modules")
    return len(ranks)
