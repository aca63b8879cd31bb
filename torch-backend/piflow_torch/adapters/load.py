"""``load_student``: a diffusers base transformer + a π-Flow adapter in the released format → a Student.

Steps, as the official ``load_lakonlab_adapter`` does them but without its framework:
1. resolve base (repo id + ``transformer`` subfolder, or a directory) and adapter (repo id + subfolder,
   or a directory) through the Hugging Face cache / download path;
2. check the pair: the adapter's ``_class_name`` and ``policy_config`` type must be ones piflow serves,
   its model dims must equal the base's;
3. load the base with diffusers in the requested dtype; GM: its ``norm_out`` becomes the GM output layer
   and ``proj_out`` an identity; DX: ``proj_out`` is sized for N nodes;
4. load the adapter's replacement weights (every one must land on a parameter, shapes equal; every
   output-layer parameter must come from the adapter), then inject its LoRA pairs with peft.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import AdapterError, UnsupportedAdapterError
from . import flux, qwen
from .adapter_format import CONFIG, AdapterFiles, read_adapter, read_json
from .heads import ADAPTER_HEAD_PREFIXES, GMOutputLayer
from .lora import inject_lora
from .resolve import resolve_model_dir
from .student import PATCH, Student

BASES = {module.BASE_CLASS.__name__: module for module in (flux, qwen)}
GM_CLASSES = {module.GM_CLASS_NAME: module for module in (flux, qwen)}
SUPPORTED_ADAPTER_CLASSES = (*GM_CLASSES, *BASES)
"""GM students (GMFlow policy) and DX students (DX policy, the base's own class with more outputs)."""
DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}

# config keys that describe the transformer body: an adapter's must equal its base's
BODY_KEYS = (
    "in_channels",
    "num_layers",
    "num_single_layers",
    "attention_head_dim",
    "num_attention_heads",
    "joint_attention_dim",
    "pooled_projection_dim",
    "guidance_embeds",
    "axes_dims_rope",
    "zero_cond_t",
    "use_additional_t_cond",
    "use_layer3d_rope",
)


def _check_pair(adapter: AdapterFiles, base_config: dict, base_dir: Path):
    """The base module (flux / qwen) this adapter runs on; refuses unsupported or mismatched pairs."""
    supported = ", ".join(SUPPORTED_ADAPTER_CLASSES)
    base_name = base_config["_class_name"]
    if base_name not in BASES:
        raise UnsupportedAdapterError(
            f"base: {base_dir} is a {base_name}; supported bases: {', '.join(BASES)}"
        )
    name = adapter.class_name
    if name in GM_CLASSES:
        module, wanted = GM_CLASSES[name], "gm"
    elif name in BASES:
        module, wanted = BASES[name], "dx"
    else:
        raise UnsupportedAdapterError(f"adapter: _class_name {name!r} is not supported; supported: {supported}")
    if adapter.policy_type != wanted:
        raise UnsupportedAdapterError(
            f"adapter: a {name} adapter must carry a {'GMFlow' if wanted == 'gm' else 'DX'} policy_config"
        )
    if module.BASE_CLASS.__name__ != base_name:
        raise AdapterError(f"adapter: a {name} adapter needs a {module.BASE_CLASS.__name__} base, got {base_name}")
    for key in BODY_KEYS:
        if key in adapter.config and key in base_config and _norm(adapter.config[key]) != _norm(base_config[key]):
            raise AdapterError(
                f"adapter: config {key} = {adapter.config[key]!r} but the base has {base_config[key]!r}: "
                "the adapter was made for another base"
            )
    if base_config.get("patch_size", 1) not in (1, PATCH) or base_config["in_channels"] % (PATCH * PATCH):
        raise UnsupportedAdapterError("base: only 2×2-packed latents (in_channels = 4·C) are supported")
    return module


def _norm(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


def _install_gm_output(model: nn.Module, adapter: AdapterFiles, base_config: dict) -> tuple[GMOutputLayer, int]:
    cfg = adapter.config
    inner = base_config["num_attention_heads"] * base_config["attention_head_dim"]
    k = int(cfg.get("num_gaussians", 0))
    token_channels = int(cfg.get("out_channels") or cfg["in_channels"])
    logweights_channels = int(cfg.get("logweights_channels", 1))
    if k < 1 or logweights_channels != PATCH * PATCH or token_channels != base_config["in_channels"]:
        raise UnsupportedAdapterError(
            f"adapter: GM config needs num_gaussians ≥ 1, logweights_channels = {PATCH * PATCH} and "
            f"out_channels = in_channels = {base_config['in_channels']}; got K={k}, "
            f"logweights_channels={logweights_channels}, out_channels={token_channels}"
        )
    layers = int(cfg.get("gm_num_logstd_layers", 2))
    if cfg.get("constant_logstd") is None and layers < 1:
        raise AdapterError("adapter: gm_num_logstd_layers must be ≥ 1")
    layer = GMOutputLayer(
        model.norm_out,
        inner_dim=inner,
        k=k,
        token_channels=token_channels,
        logweights_channels=logweights_channels,
        constant_logstd=cfg.get("constant_logstd"),
        logstd_inner_dim=int(cfg.get("logstd_inner_dim", inner)),
        logstd_layers=layers,
    )
    model.norm_out = layer
    model.proj_out = nn.Identity()  # the GM heads replace it; its base weights are dropped
    return layer, k


def _install_dx_output(model: nn.Module, adapter: AdapterFiles) -> int:
    weight = adapter.replacements.get("proj_out.weight")
    bias = adapter.replacements.get("proj_out.bias")
    token = model.config.in_channels
    if weight is None or weight.dim() != 2 or weight.shape[0] % token:
        raise AdapterError(f"adapter: a DX student needs proj_out.weight of shape (N·{token}, inner)")
    n = weight.shape[0] // token
    model.proj_out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    return n


def _student_key(key: str, prefixes: dict[str, str]) -> str:
    """An adapter key's parameter name in the student (GM head keys move under ``norm_out``)."""
    for prefix, place in prefixes.items():
        if key.startswith(prefix):
            return place + key[len(prefix) :]
    return key


def _load_replacements(
    model: nn.Module, replacements: dict[str, torch.Tensor], required_prefixes: tuple[str, ...], key_map: dict[str, str]
) -> None:
    """Copies the adapter's non-LoRA tensors onto the student's parameters, strictly: each must land on a
    parameter of its shape, and every parameter under ``required_prefixes`` must come from the adapter."""
    mapped = {_student_key(key, key_map): tensor for key, tensor in replacements.items()}
    params = dict(model.named_parameters())
    unknown = sorted(k for k in mapped if k not in params)
    if unknown:
        raise AdapterError(f"adapter: keys {unknown[:5]} match no parameter of the student ({len(unknown)} keys)")
    for key, tensor in mapped.items():
        if tuple(params[key].shape) != tuple(tensor.shape):
            raise AdapterError(f"adapter: {key} has shape {tuple(tensor.shape)}, the student {tuple(params[key].shape)}")
    missing = sorted(n for n in params if n.startswith(required_prefixes) and n not in mapped)
    if missing:
        raise AdapterError(f"adapter: output-layer weights {missing[:5]} are missing from the adapter")
    with torch.no_grad():
        for key, tensor in mapped.items():
            params[key].copy_(tensor)


def load_student(
    base: str | Path,
    adapter: str | Path,
    *,
    base_subfolder: str | None = "transformer",
    adapter_subfolder: str | None = None,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str | None = None,
    token: str | None = None,
    local_files_only: bool | None = None,
) -> Student:
    """Loads a π-Flow student: a diffusers base transformer plus an adapter in the released format.

    Args:
        base: HF repo id (``black-forest-labs/FLUX.1-dev``, ``Qwen/Qwen-Image``) or a local directory
        adapter: HF repo id (``Lakonik/pi-FLUX.1``) or a local directory
        base_subfolder: the transformer's folder inside ``base`` (None: ``base`` is the transformer's)
        adapter_subfolder: e.g. ``gmflux_k8_piid_4step``; None: the adapter is at the top level
        dtype: torch.bfloat16 / float16 / float32 (weights and compute; the policy runs in float32)
        device: default CUDA when available, else CPU
        token: HF token; None = ``HF_TOKEN`` / the stored login (FLUX.1-dev is gated)
        local_files_only: True = the HF cache only; None = as ``HF_HUB_OFFLINE`` says
    Raises:
        UnsupportedAdapterError: an adapter class or policy type piflow does not serve (names the supported)
        AdapterError: unreadable files, a base/adapter mismatch, keys that do not fit
        ModelNotFoundError: a repo id or directory that does not resolve
    """
    if dtype not in DTYPES:
        raise UnsupportedAdapterError(f"dtype {dtype} is not supported; supported: {', '.join(DTYPES.values())}")
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base_dir = resolve_model_dir(base, base_subfolder, what="base", token=token, local_files_only=local_files_only)
    adapter_dir = resolve_model_dir(adapter, adapter_subfolder, what="adapter", token=token, local_files_only=local_files_only)
    base_config = read_json(base_dir / CONFIG, "base")
    files = read_adapter(adapter_dir, dtype)
    module = _check_pair(files, base_config, base_dir)
    try:
        model = module.BASE_CLASS.from_pretrained(str(base_dir), torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise AdapterError(f"base: diffusers could not load {base_dir} ({error})") from None
    if files.policy_type == "gm":
        output_layer, k = _install_gm_output(model, files, base_config)
        required, key_map = ("norm_out.",), ADAPTER_HEAD_PREFIXES
    else:
        output_layer, k = None, _install_dx_output(model, files)
        required, key_map = ("proj_out.",), {}
    model.to(dtype)
    _load_replacements(model, files.replacements, required, key_map)
    inject_lora(model, files.lora)
    module.cast_rope_to_model_dtype(model, dtype)
    model.to(device).eval().requires_grad_(False)
    return Student(
        transformer=model,
        base=module,
        config=base_config,
        policy_type=files.policy_type,
        k=k,
        policy_kwargs=files.policy_kwargs,
        dtype=dtype,
        device=device,
        output_layer=output_layer,
    )
