"""The tiny complete bases under torch-backend/fixtures/bases are what build_bases.py makes, and load."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from conftest import BACKEND_ROOT, OFFICIAL_DIR

BASES = BACKEND_ROOT / "fixtures" / "bases"


def _builder():
    spec = importlib.util.spec_from_file_location("build_bases", BACKEND_ROOT / "fixtures" / "build_bases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest_tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + str(path.resolve())
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_rebuilding_the_bases_reproduces_the_committed_files_byte_for_byte(tmp_path):
    _builder().build_all(tmp_path)
    for name in ("piflux-tiny", "piqwen-tiny"):
        assert _digest_tree(tmp_path / name) == _digest_tree(BASES / name), name


@pytest.mark.parametrize("name,case", [("piflux-tiny", "piflux_gm_k8_tiny"), ("piqwen-tiny", "piqwen_gm_k8_tiny")])
def test_each_base_links_the_official_fixture_transformer(name, case):
    link = BASES / name / "transformer"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (OFFICIAL_DIR / case / "base" / "transformer").resolve()


def test_the_flux_base_loads_as_a_diffusers_pipeline_and_fits_its_transformer():
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(BASES / "piflux-tiny", transformer=None, torch_dtype=torch.float32)
    embeds, pooled, _ = pipe.encode_prompt(prompt=["red apple"], prompt_2=None, device="cpu", max_sequence_length=32)
    config = pipe.vae.config
    import json

    t = json.loads((BASES / "piflux-tiny" / "transformer" / "config.json").read_text())
    assert embeds.shape == (1, 32, t["joint_attention_dim"]) and pooled.shape == (1, t["pooled_projection_dim"])
    assert config.latent_channels * 4 == t["in_channels"] and pipe.vae_scale_factor == 8


def test_the_qwen_base_loads_and_its_tokenizer_drops_exactly_the_template():
    from diffusers import QwenImagePipeline

    pipe = QwenImagePipeline.from_pretrained(BASES / "piqwen-tiny", transformer=None, torch_dtype=torch.float32)
    prompt = "a red apple"
    embeds, _mask = pipe.encode_prompt(prompt=[prompt], device="cpu")
    # what is left after the 34 dropped tokens: the prompt's own tokens and the template's closing ones
    tokens = pipe.tokenizer(pipe.prompt_template_encode.format(prompt)).input_ids
    own = pipe.tokenizer(prompt).input_ids
    suffix = pipe.tokenizer("<|im_end|>\n<|im_start|>assistant\n").input_ids
    assert tokens[pipe.prompt_template_encode_start_idx:] == own + suffix
    assert embeds.shape[1] == len(own) + len(suffix) and pipe.vae_scale_factor == 8
