"""``npm run conformance:official``: every case in ``$PIFLOW_OFFICIAL_DIR`` (default ``fixtures/official``)
through piflow's own loader and sampler, against what the official π-Flow pipelines computed.

Per case (a directory with ``case.json``, ``io.safetensors``, ``base/<subfolder>``, ``adapter/``):
- ``load``: ``load_student(base, adapter)`` in float32 on the CPU; class, policy and K as recorded;
- ``replay``: each recorded transformer call (inputs ``stepN.*``) through the student; raw outputs
  (``stepN.out.*``), unpacked ones (``stepN.gm.*`` when recorded), RoPE ids, and each step's σ against
  piflow's schedule;
- ``sampler``: ``piflow_torch.sampler.sample`` from the recorded noise and embeddings with the case's
  settings and ``substep_rule``; every NFE's input state (``stepN.hidden_states``) and the final latents.
All within the case's ``tolerance.float32_abs``. Prints ``N passed, N failed``; exits 1 on any failure.
Options: ``--dir PATH``, ``--device cpu|cuda``, ``--verbose``; other arguments filter case names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..adapters import Student, load_student, pack_latents, unpack_latents
from ..adapters.flux import image_ids, text_ids
from ..policy import build_schedule
from ..sampler import SamplerSettings, sample
from .cases import REPO_ROOT
from .compare import FieldResult, compare_close, compare_exact, error_field, report


def official_dir() -> Path:
    """``$PIFLOW_OFFICIAL_DIR``, else the repository's copy ``fixtures/official``."""
    override = os.environ.get("PIFLOW_OFFICIAL_DIR")
    return Path(override).resolve() if override else REPO_ROOT / "fixtures" / "official"


@dataclass
class OfficialCase:
    name: str
    directory: Path
    meta: dict
    io: dict[str, torch.Tensor]

    @property
    def atol(self) -> float:
        return float(self.meta["tolerance"]["float32_abs"])

    @property
    def latent_hw(self) -> tuple[int, int]:
        scale = int(self.meta.get("vae_scale_factor", 8))
        return self.meta["call"]["height"] // scale, self.meta["call"]["width"] // scale


def load_case(directory: Path) -> OfficialCase:
    meta = json.loads((directory / "case.json").read_text())
    for key in ("call", "steps", "tolerance", "substep_rule"):
        if key not in meta:
            raise ValueError(f"{directory.name}/case.json has no {key!r}")
    return OfficialCase(meta.get("case", directory.name), directory, meta, load_file(str(directory / "io.safetensors")))


def conditioning_of(case: OfficialCase, student: Student, step: int | None) -> dict:
    """The recorded text-encoder outputs under the names the student takes (+ a step's guidance)."""
    cond = {name: case.io[name] for name in student.conditioning_names if name in case.io}
    if student.uses_guidance and step is not None and f"step{step}.guidance" in case.io:
        cond["guidance"] = case.io[f"step{step}.guidance"]
    return cond


def settings_of(case: OfficialCase) -> SamplerSettings:
    call = case.meta["call"]
    scheduler = call.get("scheduler", {})
    if scheduler.get("use_dynamic_shifting"):
        raise ValueError("dynamic shifting is not what the released students sample with")
    if any(key.startswith("negative_") for key in case.io):
        raise ValueError("the case uses true CFG (negative embeddings): the students sample without it")
    guidance = call.get("guidance_scale")
    return SamplerSettings(
        nfe=call["num_inference_steps"],
        substep_rule=case.meta["substep_rule"],
        shift=scheduler.get("shift", 1.0),
        final_step_size_scale=scheduler.get("final_step_size_scale", 1.0),
        total_substeps=call.get("total_substeps", 128),
        temperature=call.get("temperature", "auto"),
        guidance=float(guidance) if isinstance(guidance, (int, float)) else None,
    )


def check_load(case: OfficialCase, student: Student) -> list[FieldResult]:
    kinds = {"FluxTransformer2DModel": "flux", "QwenImageTransformer2DModel": "qwen"}
    policy = {"GMFlow": "gm", "DX": "dx"}.get(case.meta.get("policy", {}).get("type"))
    fields = [
        FieldResult("kind", student.kind == kinds.get(case.meta.get("base_class")), f"kind: {student.kind}"),
        FieldResult("policy", student.policy_type == policy, f"policy: {student.policy_type} (case {policy})"),
    ]
    if "k" in case.meta:
        fields.append(compare_exact("k", student.k, case.meta["k"]))
    if "latent_channels" in case.meta:
        fields.append(compare_exact("latent_channels", student.latent_channels, case.meta["latent_channels"]))
    return fields


def check_replay(case: OfficialCase, student: Student, device: torch.device) -> list[FieldResult]:
    atol, io = case.atol, case.io
    height, width = case.latent_hw
    schedule = build_schedule(
        len(case.meta["steps"]),
        shift=settings_of(case).shift,
        final_step_size_scale=settings_of(case).final_step_size_scale,
        substep_rule=case.meta["substep_rule"],
    )
    fields: list[FieldResult] = []
    for i, step in enumerate(case.meta["steps"]):
        x_packed = io[f"step{i}.hidden_states"].to(device)
        timestep = io[f"step{i}.timestep"].to(device)
        fields.append(compare_close(f"step{i}.timestep vs schedule", schedule.steps[i].sigma_src, step["timestep"], 0, 1e-6))
        cond = conditioning_of(case, student, i)
        raw = student.forward_raw(x_packed, timestep, cond, height=height // 2, width=width // 2)
        for name, got in raw.items():
            key = f"step{i}.out.{name}"
            if key in io:
                fields.append(compare_close(key, got, io[key], 0, atol))
            else:
                fields.append(FieldResult(key, False, f"{key}: not recorded in the case"))
        out = student.forward(unpack_latents(x_packed, height // 2, width // 2), timestep, cond)
        for name, got in (("means", getattr(out, "means_u", None)), ("logweights", getattr(out, "logweights", None)), ("logstds", getattr(out, "logstds", None))):
            key = f"step{i}.gm.{name}"
            if key in io and got is not None:
                fields.append(compare_close(key, got, io[key], 0, atol))
        if f"step{i}.img_ids" in io:
            fields.append(compare_exact(f"step{i}.img_ids", image_ids(height // 2, width // 2, torch.device("cpu")), io[f"step{i}.img_ids"]))
        if f"step{i}.txt_ids" in io:
            fields.append(compare_exact(f"step{i}.txt_ids", text_ids(io["prompt_embeds"].shape[1], torch.device("cpu")), io[f"step{i}.txt_ids"]))
        shapes = step.get("img_shapes")
        if shapes is not None:
            fields.append(compare_exact(f"step{i}.img_shapes", [1, height // 2, width // 2], shapes[0]))
    return fields


def check_sampler(case: OfficialCase, student: Student, device: torch.device) -> list[FieldResult]:
    atol, io = case.atol, case.io
    states: list[torch.Tensor] = []
    final = sample(
        student,
        io["noise"].to(device),
        conditioning_of(case, student, None),
        settings_of(case),
        on_step=lambda _k, x: states.append(x.clone()),
    )
    fields: list[FieldResult] = []
    for i in range(1, len(case.meta["steps"])):  # the input of NFE i is the state after NFE i − 1
        key = f"step{i}.hidden_states"
        if key in io:
            fields.append(compare_close(f"{key} (sampler state)", pack_latents(states[i - 1]), io[key], 0, atol))
    if "final_latents" in io:
        fields.append(compare_close("final_latents", final, io["final_latents"], 0, atol))
    if "final_latents_packed" in io:
        fields.append(compare_close("final_latents_packed", pack_latents(final), io["final_latents_packed"], 0, atol))
    if not any(f.field.startswith("final_latents") for f in fields):
        fields.append(FieldResult("final_latents", False, "final_latents: the case records neither final_latents nor final_latents_packed"))
    return fields


def run(directory: Path, device: torch.device, filters: list[str], verbose: bool) -> int:
    passed = failed = 0
    if not directory.is_dir():
        print(f"FAIL official directory not found: {directory} (set PIFLOW_OFFICIAL_DIR)")
        print("0 passed, 1 failed")
        return 1
    case_dirs = sorted(p.parent for p in directory.glob("*/case.json"))
    case_dirs = [d for d in case_dirs if not filters or any(f in d.name for f in filters)]
    print(f"official cases: {directory} ({len(case_dirs)} cases), device {device}")
    if not case_dirs:
        print("FAIL no case directories (each needs a case.json)")
        failed += 1
    for case_dir in case_dirs:
        parts: list[tuple[str, list[FieldResult]]] = []
        try:
            case = load_case(case_dir)
            subfolder = "transformer" if (case_dir / "base" / "transformer").is_dir() else None
            student = load_student(case_dir / "base", case_dir / "adapter", base_subfolder=subfolder, dtype=torch.float32, device=device)
            parts.append(("load", check_load(case, student)))
            parts.append(("replay", check_replay(case, student, device)))
            parts.append(("sampler", check_sampler(case, student, device)))
        except Exception as error:  # noqa: BLE001 (any error of a case is that case's failure)
            parts.append(("run", [error_field(error)]))
        for part, fields in parts:
            ok = report(f"{case_dir.name} {part}", fields, verbose)
            passed += ok
            failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conformance:official", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("filters", nargs="*")
    args = parser.parse_args(argv)
    directory = args.dir.resolve() if args.dir else official_dir()
    return run(directory, torch.device(args.device), args.filters, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
