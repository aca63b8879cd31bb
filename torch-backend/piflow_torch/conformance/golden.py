"""``npm run conformance:torch``: every golden case through the torch policy code, float64 and float32.

Prints one line per case and dtype, the failing fields, and the closing ``N passed, N failed, N skipped``;
exits 1 on any failure. Kinds the torch backend does not implement (π-ID training bookkeeping:
``train_sample_t``, ``piid_segment``) are reported as skipped, by name; a kind the golden README does
not document fails. Options: ``--dir PATH`` (else ``$PIFLOW_GOLDEN_DIR``, else ``fixtures/golden``),
``--dtype float64|float32``, ``--device cpu|cuda``, ``--verbose``; other arguments filter case ids.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ..policy import (
    DxOptions,
    DxOutput,
    DxPolicy,
    DynamicShift,
    GmOutput,
    GmPolicy,
    build_schedule,
    rollout,
    sample_loop,
)
from .cases import DOCUMENTED_KINDS, GoldenCase, golden_dir, load_cases
from .compare import FieldResult, compare_close, compare_exact, error_field, report

EXACT_FIELDS = frozenset({"num_substeps", "substeps_per_step", "total_substeps_used", "segment_index"})
NOT_COVERED = {
    "train_sample_t": "π-ID training bookkeeping; the serving backend never selects training segments",
    "piid_segment": "π-ID training bookkeeping; the serving backend never trains",
}

Outputs = dict[str, object]


def _sigma(value: object, device: torch.device) -> float | torch.Tensor:
    """A (B) tensor input stays per-sample; a bare number is shared by the batch."""
    return value.to(device) if isinstance(value, torch.Tensor) else float(value)


def _gm_output(rec: dict, dtype: torch.dtype, device: torch.device) -> GmOutput:
    return GmOutput(
        rec["means_u"].to(device, dtype), rec["logweights"].to(device, dtype), rec["logstds"].to(device, dtype)
    )


def _run_gm_velocity(inputs: dict, dtype: torch.dtype, device: torch.device) -> Outputs:
    mask = inputs.get("dropout_mask")
    policy = GmPolicy(
        _gm_output(inputs, dtype, device),
        inputs["x_src"].to(device, dtype),
        _sigma(inputs["sigma_src"], device),
        eps=inputs["eps"],
        temperature=inputs.get("temperature", 1.0),
        dropout_mask=mask.to(device) if isinstance(mask, torch.Tensor) else None,
    )
    x_t = inputs["x_t"].to(device, dtype)
    sigma_t = _sigma(inputs["sigma_t"], device)
    out: Outputs = {
        "means_x0": policy.means_x0,
        "var_x0": policy.var_x0.reshape(-1),
        "logweights_effective": policy.logweights_effective,
        "posterior_weights": policy.posterior_weights(x_t, sigma_t),
        "x0_hat": policy.x0_hat(x_t, sigma_t),
        "u": policy.velocity(x_t, sigma_t),
    }
    if policy.dropout_mask_effective is not None:
        out["dropout_mask_effective"] = policy.dropout_mask_effective
    return out


def _dx_policy(rec: dict, x_src: torch.Tensor, sigma_src: object, dtype, device) -> DxPolicy:
    return DxPolicy(
        DxOutput(rec["grid_u"].to(device, dtype)),
        x_src,
        _sigma(sigma_src, device),
        segment_size=rec["segment_size"],
        shift=rec["shift"],
        mode=rec["mode"],
        eps=rec["eps"],
    )


def _run_dx_velocity(inputs: dict, dtype: torch.dtype, device: torch.device) -> Outputs:
    policy = _dx_policy(inputs, inputs["x_src"].to(device, dtype), inputs["sigma_src"], dtype, device)
    out: Outputs = {
        "nodes_x0": policy.nodes_x0,
        "raw_src": policy.raw_src,
        "raw_dst": policy.raw_dst,
        "segment_effective": policy.segment_effective,
    }
    for i, query in enumerate(inputs["queries"]):
        x_t = query["x_t"].to(device, dtype)
        sigma_t = _sigma(query["sigma_t"], device)
        out[f"results[{i}].raw_t"] = policy.raw_time(sigma_t)
        out[f"results[{i}].x0_hat"] = policy.x0_hat(x_t, sigma_t)
        out[f"results[{i}].u"] = policy.velocity(x_t, sigma_t)
    return out


def _run_rollout(inputs: dict, dtype: torch.dtype, device: torch.device) -> Outputs:
    spec = inputs["policy"]
    x = inputs["x_src"].to(device, dtype)
    sigma_src = float(inputs["sigma_src"])
    if spec["type"] == "dx":
        policy = _dx_policy(spec, x, sigma_src, dtype, device)
    else:
        policy = GmPolicy(
            _gm_output(spec, dtype, device), x, sigma_src, eps=spec["eps"], temperature=spec.get("temperature", 1.0)
        )
    trajectory: list[torch.Tensor] = []
    result = rollout(
        policy,
        x,
        sigma_src=sigma_src,
        sigma_dst=float(inputs["sigma_dst"]),
        shift=inputs["shift"],
        total_substeps=inputs["total_substeps"],
        substep_rule="round",
        on_substep=lambda _i, _sigma, state: trajectory.append(state),
    )
    return {
        "raw_src": result.raw_src,
        "raw_dst": result.raw_dst,
        "num_substeps": result.num_substeps,
        "substep_sigmas": result.sigmas,
        "raw_final": result.raw_final,
        "x_dst": result.x,
        "x_trajectory": torch.stack(trajectory),
    }


def _schedule_of(inputs: dict):
    dynamic = None
    if inputs.get("use_dynamic_shifting"):
        dynamic = DynamicShift(
            seq_len=inputs["seq_len"],
            base_seq_len=inputs["base_seq_len"],
            max_seq_len=inputs["max_seq_len"],
            base_logshift=inputs["base_logshift"],
            max_logshift=inputs["max_logshift"],
        )
    return build_schedule(
        inputs["nfe"],
        shift=inputs["shift"],
        final_step_size_scale=inputs.get("final_step_size_scale", 1.0),
        total_substeps=inputs.get("total_substeps", 128),
        substep_rule="round",
        h=inputs.get("h", 0.0),
        num_train_timesteps=inputs.get("num_train_timesteps", 1000),
        dynamic_shift=dynamic,
    )


def _run_schedule(inputs: dict, dtype: torch.dtype, device: torch.device) -> Outputs:
    s = _schedule_of(inputs)

    def column(name: str) -> list:
        return [getattr(step, name) for step in s.steps]

    return {
        "shift_used": s.shift_used,
        "raw_src": column("raw_src"),
        "sigma_src": column("sigma_src"),
        "sigma_next": column("sigma_next"),
        "m": column("m"),
        "sigma_dst": column("sigma_dst"),
        "raw_dst": column("raw_dst"),
        "timesteps": column("timestep"),
        "timesteps_dst": column("timestep_dst"),
        "substeps_per_step": column("num_substeps"),
        "total_substeps_used": s.total_substeps_used,
        "auto_temperature": s.auto_temperature,
        "temperature_per_step_auto": column("temperature"),
    }


def _run_sampling_loop(inputs: dict, dtype: torch.dtype, device: torch.device) -> Outputs:
    schedule = build_schedule(
        inputs["nfe"],
        shift=inputs["shift"],
        final_step_size_scale=inputs.get("final_step_size_scale", 1.0),
        total_substeps=inputs.get("total_substeps", 128),
        substep_rule="round",
    )
    recorded = inputs["network_outputs"]
    is_dx = inputs["policy_type"] == "dx"

    def forward(_x: torch.Tensor, _sigma: float, step: int):
        rec = recorded[step]
        return DxOutput(rec["grid_u"].to(device, dtype)) if is_dx else _gm_output(rec, dtype, device)

    states: list[torch.Tensor] = []
    x_final = sample_loop(
        inputs["x_init"].to(device, dtype),
        schedule,
        forward,
        eps=inputs["eps"],
        temperature=inputs.get("temperature", 1.0),
        dx=DxOptions(inputs["dx_segment_size"], inputs["dx_shift"], inputs.get("dx_mode", "grid")) if is_dx else None,
        on_step=lambda _k, x: states.append(x),
    )
    out: Outputs = {"x_final": x_final}
    for k, step in enumerate(schedule.steps):
        out[f"steps[{k}].sigma_src"] = step.sigma_src
        out[f"steps[{k}].sigma_dst"] = step.sigma_dst
        out[f"steps[{k}].num_substeps"] = step.num_substeps
        out[f"steps[{k}].x_after"] = states[k]
    return out


RUNNERS: dict[str, Callable[[dict, torch.dtype, torch.device], Outputs]] = {
    "gm_velocity": _run_gm_velocity,
    "dx_velocity": _run_dx_velocity,
    "rollout": _run_rollout,
    "schedule": _run_schedule,
    "sampling_loop": _run_sampling_loop,
}


def expected_fields(expected: object, prefix: str = "") -> list[tuple[str, object]]:
    """(path, value) of every expected leaf: ``u``, ``results[1].x0_hat``, ``steps[0].num_substeps``."""
    if isinstance(expected, dict):
        return [item for key, value in expected.items() for item in expected_fields(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")]
    if isinstance(expected, list) and expected and all(isinstance(v, dict) for v in expected):
        return [item for i, value in enumerate(expected) for item in expected_fields(value, f"{prefix}[{i}]")]
    return [(prefix, expected)]


def check_case(case: GoldenCase, outputs: Outputs, dtype_name: str) -> list[FieldResult]:
    """Compares every expected field with the produced one at the dtype's tolerance."""
    tol = case.tolerance[dtype_name]
    results = []
    for path, expected in expected_fields(case.expected):
        got = outputs.get(path)
        leaf = path.rsplit(".", 1)[-1]
        is_bool = isinstance(expected, torch.Tensor) and expected.dtype == torch.bool or isinstance(expected, bool)
        if leaf in EXACT_FIELDS or is_bool:
            results.append(compare_exact(path, got, expected))
        else:
            results.append(compare_close(path, got, expected, tol["rtol"], tol["atol"]))
    return results


DTYPES = {"float64": torch.float64, "float32": torch.float32}


def run(directory: Path, dtypes: list[str], device: torch.device, filters: list[str], verbose: bool) -> int:
    passed = failed = skipped = 0
    try:
        cases = [c for c in load_cases(directory) if not filters or any(f in c.id for f in filters)]
    except (OSError, ValueError) as error:
        print(f"FAIL loading cases: {error}")
        print("0 passed, 1 failed, 0 skipped")
        return 1
    print(f"golden cases: {directory} ({len(cases)} cases), device {device}")
    for case in cases:
        if case.kind in NOT_COVERED:
            skipped += 1
            print(f"SKIP {case.id} [{case.kind}]: not covered by the torch backend ({NOT_COVERED[case.kind]})")
            continue
        runner = RUNNERS.get(case.kind)
        for dtype_name in dtypes:
            label = f"{case.id} [{case.kind}] {dtype_name}"
            if runner is None:
                failed += 1
                documented = "documented but not implemented" if case.kind in DOCUMENTED_KINDS else "unknown"
                print(f"FAIL {label}: {documented} case kind")
                continue
            try:
                fields = check_case(case, runner(case.inputs, DTYPES[dtype_name], device), dtype_name)
            except Exception as error:  # noqa: BLE001 (any error of a case is that case's failure)
                fields = [error_field(error)]
            ok = report(label, fields, verbose)
            passed += ok
            failed += not ok
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conformance:torch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--dtype", choices=sorted(DTYPES), action="append")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("filters", nargs="*")
    args = parser.parse_args(argv)
    directory = args.dir.resolve() if args.dir else golden_dir()
    return run(directory, args.dtype or ["float64", "float32"], torch.device(args.device), args.filters, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
