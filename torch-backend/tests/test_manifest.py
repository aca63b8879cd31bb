"""Manifests: the bundled released students and the fixture models validate; bad ones fail by field."""

from __future__ import annotations

import json

import pytest

from conftest import BACKEND_ROOT
from piflow_torch.manifest import ManifestError, bundled_ids, load_manifest

FIXTURE_MANIFESTS = BACKEND_ROOT / "fixtures" / "manifests"


def test_the_released_students_are_bundled_with_the_official_sampling_settings():
    assert bundled_ids() == ["pi-flux1-4nfe", "pi-flux1-8nfe", "pi-qwen-image-4nfe"]
    for model_id, nfe, family, subfolder in [
        ("pi-flux1-4nfe", 4, "flux", "gmflux_k8_piid_4step"),
        ("pi-flux1-8nfe", 8, "flux", "gmflux_k8_piid_8step"),
        ("pi-qwen-image-4nfe", 4, "qwen", "gmqwen_k8_piid_4step"),
    ]:
        m = load_manifest(model_id).manifest
        assert (m.id, m.family, m.sampling.nfeOptions, m.adapter.subfolder) == (model_id, family, [nfe], subfolder)
        per = m.per_nfe(nfe)
        assert (per.shift, per.finalStepSizeScale, per.temperature, per.totalSubsteps, per.substepRule) == (
            3.2, 0.5, "auto", 128, "ceil")
        assert m.policy.type == "gm" and m.policy.k == 8
        assert m.guidance.default == (3.5 if family == "flux" else None)


def test_fixture_manifests_resolve_their_local_paths_against_their_folder():
    loaded = load_manifest(FIXTURE_MANIFESTS / "piflux-tiny.json")
    base, _, _ = loaded.resolve(loaded.manifest.base)
    adapter, _, _ = loaded.resolve(loaded.manifest.adapter)
    assert (BACKEND_ROOT / "fixtures" / "bases" / "piflux-tiny").resolve().samefile(base)
    assert adapter.endswith("fixtures/official/piflux_gm_k8_tiny/adapter")


def _write(tmp_path, mutate):
    raw = json.loads((FIXTURE_MANIFESTS / "piflux-tiny.json").read_text())
    mutate(raw)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("mutate,needle", [
    (lambda m: m["sampling"]["perNfe"]["4"].update(substepRule="floor"), "substepRule"),
    (lambda m: m.update(family="sdxl"), "family"),
    (lambda m: m["sampling"].update(defaultNfe=8), "defaultNfe"),
    (lambda m: m["image"].update(defaultWidth=72), "multiple of 16"),
    (lambda m: m.update(extra=1), "extra"),
    (lambda m: m.update(guidance={"default": None}), "guidance"),
    (lambda m: m["limits"].update(maxCount=9), "maxCount"),
])
def test_an_invalid_manifest_is_refused_naming_the_field(tmp_path, mutate, needle):
    with pytest.raises(ManifestError, match=needle):
        load_manifest(_write(tmp_path, mutate))


def test_an_unknown_id_names_the_bundled_ones():
    with pytest.raises(ManifestError, match="pi-flux1-4nfe"):
        load_manifest("pi-flux9")
