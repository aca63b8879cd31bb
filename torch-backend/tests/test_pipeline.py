"""Whole generations in process: the fixture models through pipeline.generate.run_batch (real diffusers
text encoders and VAE, the real loader and sampler, CPU float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from piflow_torch.errors import Cancelled
from piflow_torch.noise import randn
from piflow_torch.pipeline.generate import run_batch
from piflow_torch.pipeline.images import decode_latents
from piflow_torch.pipeline.text import collate
from piflow_torch.sampler import sample
from support import Recorder, rgb, runtime, spec

MODELS = ["piflux-tiny", "piqwen-tiny"]


@pytest.mark.parametrize("name", MODELS)
def test_a_generation_gives_one_progress_per_nfe_and_pngs_of_the_asked_size(name):
    rt = runtime(name)
    member = Recorder(spec(rt, count=2, width=96, height=64, preview=True))
    timings = run_batch(rt, [member], lambda: False)
    assert [p[:2] for p in member.progress] == [(k, 4) for k in range(1, 5)]
    assert len(timings.step_ms) == 4 and timings.rows == 2
    assert sorted(member.images) == [0, 1] and [member.images[i][0] for i in (0, 1)] == [7, 8]
    for _, png in member.images.values():
        assert rgb(png).shape == (64, 96, 3)
    for _, _, preview in member.progress:
        assert rgb(preview).shape == (8, 12, 3)  # the latent grid (under 64 px)


def _final_latents(rt, s):
    """The sampler on its own, for comparison: noise of seeds seed + i, the model's settings."""
    noise = torch.cat([randn((1, 16, s.height // 8, s.width // 8), (s.seed + i) % 2 ** 32) for i in range(s.count)])
    conditioning = rt.encoder.encode([s.prompt])[s.prompt]
    cond = collate(rt.manifest.family, [conditioning] * s.count, [s.guidance] * s.count)
    return sample(rt.student, noise, cond, rt.settings(s))


@pytest.mark.parametrize("name", MODELS)
def test_image_i_is_the_sampler_run_from_seed_plus_i_then_decoded(name):
    rt = runtime(name)
    s = spec(rt, count=2, seed=2 ** 32 - 1)
    member = Recorder(s)
    run_batch(rt, [member], lambda: False)
    assert [member.images[i][0] for i in (0, 1)] == [2 ** 32 - 1, 0]
    latents = _final_latents(rt, s)
    for i in (0, 1):
        expected = decode_latents(rt.manifest.family, rt.base, latents[i:i + 1])[0]
        assert np.array_equal(rgb(member.images[i][1]), expected.astype(np.int16))


@pytest.mark.parametrize("name", MODELS)
def test_requests_batched_together_match_each_run_alone(name):
    """Shared forwards change results only by float rounding: different prompts (Qwen: different
    lengths, zero-padded under the mask), seeds, counts and guidance in one batch."""
    rt = runtime(name)
    guidance = (2.0, 5.0) if rt.manifest.guidance.default is not None else (None, None)
    specs = [spec(rt, prompt="a red apple", seed=1, count=2, guidance=guidance[0]),
             spec(rt, prompt="a photo of a cat and the background", seed=9, guidance=guidance[1])]
    together = [Recorder(s) for s in specs]
    timings = run_batch(rt, together, lambda: False)
    assert timings.rows == 3
    for s, batched in zip(specs, together):
        alone = Recorder(s)
        run_batch(rt, [alone], lambda: False)
        for i in range(s.count):
            diff = np.abs(rgb(batched.images[i][1]) - rgb(alone.images[i][1]))
            assert diff.max() <= 1, f"{s.prompt!r} image {i}: max |Δ| {diff.max()} levels"


def test_each_distinct_prompt_is_encoded_once_while_cached():
    rt = runtime("piflux-tiny")
    cache = rt.encoder.cache
    prompt = "an uncached prompt for the cache test"
    misses = cache.misses
    run_batch(rt, [Recorder(spec(rt, prompt=prompt, count=3)), Recorder(spec(rt, prompt=prompt))], lambda: False)
    assert cache.misses == misses + 1
    hits = cache.hits
    run_batch(rt, [Recorder(spec(rt, prompt=prompt))], lambda: False)
    assert (cache.misses, cache.hits) == (misses + 1, hits + 1)


def test_the_batch_stops_between_nfes_once_every_member_is_cancelled():
    rt = runtime("piflux-tiny")
    first, second = Recorder(spec(rt), cancel_after=1), Recorder(spec(rt, seed=3), cancel_after=2)
    with pytest.raises(Cancelled) as info:
        run_batch(rt, [first, second], lambda: first.cancelled() and second.cancelled())
    assert info.value.completed_steps == 2
    assert len(first.progress) == 1 and len(second.progress) == 2  # no events after a member's cancel
    assert first.images == {} and second.images == {}


def test_a_cancelled_member_gets_nothing_more_while_the_others_finish():
    rt = runtime("piflux-tiny")
    gone, stays = Recorder(spec(rt), cancel_after=1), Recorder(spec(rt, seed=5))
    run_batch(rt, [gone, stays], lambda: gone.cancelled() and stays.cancelled())
    assert len(gone.progress) == 1 and gone.images == {}
    assert len(stays.progress) == 4 and sorted(stays.images) == [0]


def test_a_manifest_that_does_not_describe_its_adapter_is_a_start_up_error(tmp_path):
    import json

    from piflow_torch.manifest import load_manifest
    from piflow_torch.pipeline.generate import load_model
    from support import FLUX_TINY

    raw = json.loads(FLUX_TINY.read_text())
    raw["policy"]["k"] = 4
    raw["base"]["path"] = str((FLUX_TINY.parent / raw["base"]["path"]).resolve())
    raw["adapter"]["path"] = str((FLUX_TINY.parent / raw["adapter"]["path"]).resolve())
    path = tmp_path / "wrong-k.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="'k': 4"):
        load_model(load_manifest(path), dtype=torch.float32, device=torch.device("cpu"))
