"""Elementwise comparison for conformance cases: |got − exp| ≤ atol + rtol·|exp|; integers and booleans
exactly; non-finite expectations matched exactly (−∞ by −∞, NaN by NaN). A failure names the worst
element by its multi-index, as test/conformance/compare.ts does."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FieldResult:
    field: str
    ok: bool
    message: str
    max_abs_error: float | None = None


def _as_tensor(value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    return torch.as_tensor(value, dtype=torch.float64)  # Python floats are binary64: keep every bit


def _index(flat: int, shape: tuple[int, ...]) -> str:
    idx = []
    for d in reversed(shape):
        idx.append(flat % d)
        flat //= d
    return "[" + ", ".join(str(i) for i in reversed(idx)) + "]"


def compare_close(field: str, got: object, expected: object, rtol: float, atol: float) -> FieldResult:
    """Compares numbers within tolerance (got is compared at its own precision, in float64)."""
    if got is None:
        return FieldResult(field, False, f"{field}: not produced")
    exp = _as_tensor(expected).to(torch.float64)
    g = _as_tensor(got).to(torch.float64)
    if g.numel() != exp.numel():
        return FieldResult(field, False, f"{field}: {g.numel()} values, expected {exp.numel()} (shape {list(exp.shape)})")
    shape = tuple(exp.shape)
    e, v = exp.reshape(-1), g.reshape(-1)
    finite = torch.isfinite(e)
    same_special = torch.where(torch.isnan(e), torch.isnan(v), v == e)
    diff = (v - e).abs()
    allowed = atol + rtol * e.abs()
    ok = torch.where(finite, diff <= allowed, same_special)  # NaN diff compares False: a failure
    finite_diff = torch.where(finite, diff, torch.zeros_like(diff))
    max_abs = float(finite_diff.max()) if finite_diff.numel() else 0.0
    if bool(torch.isnan(finite_diff).any()):
        max_abs = math.nan
    bad = int((~ok).sum())
    if bad == 0:
        return FieldResult(field, True, f"{field}: {e.numel()} values, max |err| {max_abs:.2e}", max_abs)
    excess = torch.where(finite, torch.nan_to_num(diff - allowed, nan=math.inf), torch.full_like(diff, math.inf))
    excess = torch.where(ok, torch.full_like(excess, -math.inf), excess)
    worst = int(excess.argmax())
    at = f"{_index(worst, shape)} (flat {worst})" if len(shape) > 1 else f"[{worst}]"
    return FieldResult(
        field,
        False,
        f"{field}: {bad}/{e.numel()} values out of tolerance (atol {atol}, rtol {rtol}); worst {at}: "
        f"got {float(v[worst]):.10g}, expected {float(e[worst]):.10g}, |diff| {float(diff[worst]):.3g} > allowed "
        f"{float(allowed[worst]):.3g}",
        max_abs,
    )


def compare_exact(field: str, got: object, expected: object) -> FieldResult:
    """Integers or booleans, exactly (booleans as 0/1)."""
    if got is None:
        return FieldResult(field, False, f"{field}: not produced")
    exp = _as_tensor(expected).to(torch.int64).reshape(-1)
    g = _as_tensor(got).to(torch.int64).reshape(-1)
    if g.numel() != exp.numel():
        return FieldResult(field, False, f"{field}: {g.numel()} values, expected {exp.numel()}")
    differ = (g != exp).nonzero().reshape(-1)
    if differ.numel() == 0:
        return FieldResult(field, True, f"{field}: {exp.numel()} values exact")
    first = int(differ[0])
    return FieldResult(
        field,
        False,
        f"{field}: {differ.numel()}/{exp.numel()} values differ (exact); first [{first}]: got {int(g[first])}, "
        f"expected {int(exp[first])}",
    )


def error_field(error: Exception) -> FieldResult:
    """A case that cannot run is a failure, with the reason."""
    return FieldResult("run", False, f"{type(error).__name__}: {error}")


def report(label: str, fields: list[FieldResult], verbose: bool) -> bool:
    """Prints ``PASS|FAIL label (n fields)`` and the failing (or, verbose, every) field; True when all passed."""
    ok = all(f.ok for f in fields)
    print(f"{'PASS' if ok else 'FAIL'} {label} ({len(fields)} fields)")
    for f in fields:
        if verbose or not f.ok:
            print(f"     {'ok  ' if f.ok else 'FAIL'} {f.message}")
    return ok
