"""The torch policy beyond the golden vectors: per-sample σ, float32 vs float64, validation, and (on a
GPU host) device placement without host synchronisation."""

from __future__ import annotations

import pytest
import torch
from conftest import requires_cuda

from piflow_torch.errors import PolicyOptionError, PolicyShapeError, PolicySigmaError
from piflow_torch.policy import DxOutput, DxPolicy, GmOutput, GmPolicy, build_schedule, rollout, sample_loop


def _gm(batch=2, k=4, c=3, h=4, w=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = GmOutput(
        torch.randn(batch, k, c, h, w, generator=g, dtype=dtype),
        torch.randn(batch, k, 1, h, w, generator=g, dtype=dtype),
        torch.randn(batch, 1, 1, 1, 1, generator=g, dtype=dtype) * 0.3 - 1,
    )
    return out, torch.randn(batch, c, h, w, generator=g, dtype=dtype)


def test_per_sample_sigma_tensors_match_the_shared_float_path():
    out, x = _gm()
    shared = GmPolicy(out, x, 0.8, temperature=0.5)
    per_sample = GmPolicy(out, x, torch.tensor([0.8, 0.8]), temperature=0.5)
    x_t = x * 0.9
    assert torch.allclose(shared.velocity(x_t, 0.4), per_sample.velocity(x_t, torch.tensor([0.4, 0.4])), atol=1e-12)


def test_at_the_source_the_velocity_is_the_prior_mean_of_the_u_means():
    out, x = _gm()
    policy = GmPolicy(out, x, 0.7)
    weights = out.logweights.softmax(dim=1)
    assert torch.allclose(policy.velocity(x, 0.7), (weights * out.means_u).sum(1), atol=1e-10)


def test_step_is_the_euler_step_of_the_velocity():
    out, x = _gm()
    policy = GmPolicy(out, x, 0.9)
    x_t = x + 0.1
    assert torch.allclose(policy.step(x_t, 0.6, 0.5), x_t + policy.velocity(x_t, 0.6) * (0.5 - 0.6), atol=1e-12)


def test_float32_rollouts_stay_close_to_float64():
    out, x = _gm(batch=1, k=8, c=16, h=16, w=16)
    kwargs = {"sigma_src": 1.0, "sigma_dst": 0.8888888888888888, "shift": 3.2, "total_substeps": 128, "substep_rule": "ceil"}
    ref = rollout(GmPolicy(out, x, 1.0, temperature=0.3), x, **kwargs)
    got = rollout(GmPolicy(out.to(torch.float32), x.float(), 1.0, temperature=0.3), x.float(), **kwargs)
    assert got.num_substeps == ref.num_substeps == 37
    assert (got.x.double() - ref.x).abs().max() < 1e-4
    assert torch.equal(x, _gm(batch=1, k=8, c=16, h=16, w=16)[1])  # the input state is never modified


def test_the_loop_runs_dx_with_its_own_shift_and_segment():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64)
    schedule = build_schedule(4, shift=3.2, final_step_size_scale=0.5, substep_rule="round")
    grids = [torch.randn(1, 5, 2, 3, 3, generator=g, dtype=torch.float64) for _ in range(4)]
    from piflow_torch.policy import DxOptions

    final = sample_loop(x, schedule, lambda _x, _s, k: DxOutput(grids[k]), dx=DxOptions(1 / 3.5, 3.2, "grid"))
    assert final.shape == x.shape and bool(torch.isfinite(final).all())


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda out, x: GmPolicy(out, x[:, :2], 0.5), PolicyShapeError),
        (lambda out, x: GmPolicy(out, x, 1.5), PolicySigmaError),
        (lambda out, x: GmPolicy(out, x, torch.tensor([0.5, -0.1])), PolicySigmaError),
        (lambda out, x: GmPolicy(out, x, 0.5, temperature=-1), PolicyOptionError),
        (lambda out, x: GmPolicy(out, x, 0.5, eps=0), PolicyOptionError),
        (lambda out, x: GmPolicy(out, x, 0.5, dropout_mask=torch.zeros(2, 3, dtype=torch.bool)), PolicyShapeError),
        (lambda out, x: DxPolicy(DxOutput(out.means_u), x, 0.5, mode="spline"), PolicyOptionError),
        (lambda out, x: rollout(GmPolicy(out, x, 0.5), x, sigma_src=0.5, sigma_dst=0.6, shift=3.2, total_substeps=128), PolicySigmaError),
        (lambda out, x: rollout(GmPolicy(out, x, 0.5), x, sigma_src=0.5, sigma_dst=0.1, shift=3.2, total_substeps=128, substep_rule="floor"), PolicyOptionError),
        (lambda out, x: build_schedule(4, shift=0), PolicyOptionError),
        (lambda out, x: build_schedule(4, h=0.5) and sample_loop(x, build_schedule(4, h=0.5), None), PolicyOptionError),
    ],
    ids=["shape", "sigma", "sigma-tensor", "temperature", "eps", "mask", "dx-mode", "sigma-order", "rule", "shift", "sde"],
)
def test_bad_arguments_raise_typed_policy_errors(build, error):
    out, x = _gm()
    with pytest.raises(error):
        build(out, x)


@requires_cuda
def test_cuda_rollout_matches_the_cpu_and_never_synchronises():
    out, x = _gm(batch=2, k=8, c=16, h=32, w=32, dtype=torch.float32)
    kwargs = {"sigma_src": 1.0, "sigma_dst": 0.8888888888888888, "shift": 3.2, "total_substeps": 128, "substep_rule": "ceil"}
    cpu = rollout(GmPolicy(out, x, 1.0, temperature=0.3), x, **kwargs).x
    gpu_out = GmOutput(out.means_u.cuda(), out.logweights.cuda(), out.logstds.cuda())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host round trip in the segment raises
    try:
        gpu = rollout(GmPolicy(gpu_out, x.cuda(), 1.0, temperature=0.3), x.cuda(), **kwargs).x
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (gpu.cpu() - cpu).abs().max() < 1e-4
