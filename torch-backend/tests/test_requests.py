"""Generate requests: JSON schema errors, then limits from the manifest, before anything is allocated."""

from __future__ import annotations

import json

import pytest

from conftest import BACKEND_ROOT
from piflow_torch.manifest import load_manifest
from piflow_torch.server.errors import ProtocolError
from piflow_torch.server.requests import normalize, parse_body

FLUX = load_manifest(BACKEND_ROOT / "fixtures" / "manifests" / "piflux-tiny.json").manifest
QWEN = load_manifest(BACKEND_ROOT / "fixtures" / "manifests" / "piqwen-tiny.json").manifest


def spec_of(body: dict, manifest=FLUX):
    return normalize(parse_body(json.dumps(body).encode()), manifest)


def test_defaults_come_from_the_manifest():
    spec = spec_of({"prompt": "red apple", "seed": 3})
    assert (spec.width, spec.height, spec.nfe, spec.count, spec.guidance, spec.preview) == (64, 64, 4, 1, 3.5, False)
    assert spec_of({"prompt": "x", "seed": 0}, QWEN).guidance is None


def _code(body, manifest=FLUX, raw=None) -> tuple[int, str]:
    with pytest.raises(ProtocolError) as info:
        normalize(parse_body(raw if raw is not None else json.dumps(body).encode()), manifest)
    return info.value.status, info.value.code


@pytest.mark.parametrize("raw", [b"{", b"[]", b"\xff\xfe", b"null"])
def test_a_body_that_is_not_a_json_object_is_malformed_json(raw):
    assert _code(None, raw=raw) == (400, "malformed_json")


@pytest.mark.parametrize("body", [
    {"seed": 1}, {"prompt": "x"}, {"prompt": "x", "seed": 1, "steps": 4}, {"prompt": 1, "seed": 1},
    {"prompt": "x", "seed": 1.5}, {"prompt": "x", "seed": -1}, {"prompt": "x", "seed": 2 ** 32},
    {"prompt": "x", "seed": 1, "count": "2"}, {"prompt": "x", "seed": 1, "preview": "yes"},
    {"prompt": "x", "seed": True},
])
def test_missing_unknown_or_mistyped_fields_are_invalid_request(body):
    assert _code(body) == (400, "invalid_request")


@pytest.mark.parametrize("extra", [
    {"prompt": " "}, {"prompt": "x" * 1001}, {"count": 0}, {"count": 5}, {"nfe": 8}, {"width": 72},
    {"width": 528}, {"height": 16}, {"width": 512, "height": 528}, {"guidance": 0.5}, {"guidance": 11},
])
def test_values_outside_the_models_limits_are_invalid_value(extra):
    assert _code({"prompt": "red apple", "seed": 1, **extra}) == (400, "invalid_value")


def test_guidance_for_a_model_without_embedded_guidance_is_invalid_value():
    assert _code({"prompt": "x", "seed": 1, "guidance": 3.5}, QWEN) == (400, "invalid_value")


def test_the_pixel_cap_applies_to_the_product_of_the_sides(tmp_path):
    raw = json.loads((BACKEND_ROOT / "fixtures" / "manifests" / "piflux-tiny.json").read_text())
    raw["image"]["maxPixels"] = 256 * 256
    path = tmp_path / "m.json"
    path.write_text(json.dumps(raw))
    capped = load_manifest(path).manifest
    assert spec_of({"prompt": "x", "seed": 1, "width": 512, "height": 128}, capped).width == 512
    assert _code({"prompt": "x", "seed": 1, "width": 512, "height": 256}, capped) == (400, "invalid_value")
