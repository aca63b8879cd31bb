"""Loads golden cases (golden/README.md §1 format): every case ``index.json`` lists, then any other
``*.json`` whose top level has a ``kind``. Tensors ``{shape, data}`` become float64 torch tensors (with
"-inf"/"inf"/"nan" decoded) or bool tensors; everything else stays as JSON gives it."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[3]
NON_FINITE = {"-inf": -math.inf, "inf": math.inf, "+inf": math.inf, "nan": math.nan}
DOCUMENTED_KINDS = (
    "gm_velocity",
    "dx_velocity",
    "rollout",
    "schedule",
    "sampling_loop",
    "train_sample_t",
    "piid_segment",
)


def golden_dir() -> Path:
    """``$PIFLOW_GOLDEN_DIR``, else the repository's copy ``fixtures/golden``."""
    override = os.environ.get("PIFLOW_GOLDEN_DIR")
    return Path(override).resolve() if override else REPO_ROOT / "fixtures" / "golden"


@dataclass(frozen=True)
class GoldenCase:
    id: str
    kind: str
    description: str
    file: str
    inputs: dict
    expected: dict
    tolerance: dict


def _number(v: object, where: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str) and v.lower() in NON_FINITE:
        return NON_FINITE[v.lower()]
    raise ValueError(f'{where}: expected a number or "-inf"/"inf"/"nan", got {v!r}')


def decode(raw: object, where: str) -> object:
    """Decodes tensors recursively and checks their data length against the shape."""
    if isinstance(raw, list):
        return [decode(v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if isinstance(raw, str) and raw.lower() in NON_FINITE:
        return NON_FINITE[raw.lower()]
    if not isinstance(raw, dict):
        return raw
    if isinstance(raw.get("shape"), list) and isinstance(raw.get("data"), list):
        shape, data = raw["shape"], raw["data"]
        if math.prod(shape) != len(data) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"{where}: shape {shape} does not match {len(data)} data values")
        if data and all(isinstance(d, bool) for d in data):
            return torch.tensor(data, dtype=torch.bool).reshape(shape)
        values = [_number(d, f"{where}.data[{i}]") for i, d in enumerate(data)]
        return torch.tensor(values, dtype=torch.float64).reshape(shape)
    return {key: decode(value, f"{where}.{key}") for key, value in raw.items()}


def parse_case(text: str, file: str) -> GoldenCase:
    doc = json.loads(text)
    where = Path(file).name
    if not isinstance(doc.get("kind"), str):
        raise ValueError(f'{where}: no "kind"')
    tolerance = doc.get("tolerance") or {}
    for dtype in ("float64", "float32"):
        t = tolerance.get(dtype)
        if not isinstance(t, dict) or not all(isinstance(t.get(k), (int, float)) for k in ("rtol", "atol")):
            raise ValueError(f"{where}: tolerance.{dtype} {{rtol, atol}} missing")
    return GoldenCase(
        id=doc.get("id") if isinstance(doc.get("id"), str) else Path(file).stem,
        kind=doc["kind"],
        description=doc.get("description", ""),
        file=where,
        inputs=decode(doc.get("inputs", {}), f"{where}:inputs"),
        expected=decode(doc.get("expected", {}), f"{where}:expected"),
        tolerance=tolerance,
    )


def load_cases(directory: Path | None = None) -> list[GoldenCase]:
    """Every case in ``directory``; raises FileNotFoundError when it does not exist."""
    root = Path(directory) if directory is not None else golden_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"golden directory not found: {root} (set PIFLOW_GOLDEN_DIR)")
    files: list[str] = []
    index = root / "index.json"
    if index.exists():
        for entry in json.loads(index.read_text()).get("cases", []):
            name = entry.get("file") or f"{entry.get('id')}.json"
            if name not in files:
                files.append(name)
    for path in sorted(root.glob("*.json")):
        if path.name == "index.json" or path.name in files:
            continue
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            continue  # not a case file: the index does not list it either
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            files.append(path.name)
    return [parse_case((root / name).read_text(), name) for name in files]
