"""How well a v2 teacher follows its prompt while it trains: the independent evaluation's
specific-emoji rank (and its FD/KID/diversity) of a teacher snapshot or checkpoint, run in torch, with no
student and no export.

  .toolchain/torch-py/bin/python -m models.v2.probe --teacher models/v2/snapshots/teacher.pt --limit 256

Rows, all on the same prompts and seeds as models/eval/independent.py (Euler over the shifted schedule,
CFG against "no text"):
  teacher-50 (compact)  the text through the compact encoder folded into the exported graphs: what the
                        product will run
  teacher-50 (MiniLM)   the text as the teacher was trained on it (all-MiniLM-L6-v2 vectors): the gap to
                        the row above is what the compact encoder costs
  teacher-4 (compact)   4 Euler steps, the baseline the student must beat
Writes <out>/metrics.json, table.md and free-*.png (default models/eval/results/probe-<teacher step>);
a probe is a progress reading, not the shipped model's evaluation (that is models.eval.independent).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from models.eval.features import FeatureSpaces
from models.eval.generate import cfg_euler, sample_in_chunks
from models.eval.independent import FREE_PROMPTS, RESULTS, Evaluation, format_table, run_method, write_results
from models.eval.samples import grid_uint8
from models.recipe.export import load_net
from models.v2.export import WithTextEncoder
from models.v2.text import DIM, ENCODER_DIR, FullEncoder, load_compact

GUIDANCE, SHIFT = 3.0, 3.2  # the distillation's CFG and the manifest's shift (models/recipe/export.py)


class SnapshotTeacher:
    """A v2 teacher in torch, conditioned either on the compact encoder's word ids or on MiniLM vectors."""

    def __init__(self, teacher_path: str, encoder_dir: str = ENCODER_DIR):
        net, ck = load_net(teacher_path)
        if net.cfg.text_input != "vector":
            raise ValueError(f"{teacher_path}: not a v2 teacher (text_input {net.cfg.text_input!r})")
        self.step = int(ck["step"])
        encoder, self.tokenizer = load_compact(encoder_dir)
        self.net, self.with_encoder = net, WithTextEncoder(encoder, net).eval()
        self.shape = (3, net.cfg.image_size, net.cfg.image_size)
        self._minilm: FullEncoder | None = None

    def _tokens(self, prompts: list[str]) -> np.ndarray:
        return np.asarray([self.tokenizer.encode(p) for p in prompts], dtype=np.int64)

    def _vectors(self, prompts: list[str]) -> np.ndarray:
        """MiniLM vectors; the empty prompt is the zero vector, the trainer's "no text"."""
        if self._minilm is None:
            self._minilm = FullEncoder(threads=torch.get_num_threads())
        out = np.zeros((len(prompts), DIM), dtype=np.float32)
        given = [i for i, p in enumerate(prompts) if p.strip()]
        if given:
            out[given] = self._minilm([prompts[i] for i in given])
        return out

    def _forward_tokens(self, x: torch.Tensor, sigma: torch.Tensor, tokens: np.ndarray) -> torch.Tensor:
        return self.with_encoder(x, sigma, torch.from_numpy(tokens))

    def _forward_vectors(self, x: torch.Tensor, sigma: torch.Tensor, vectors: np.ndarray) -> torch.Tensor:
        return self.net(x, sigma, torch.from_numpy(vectors))

    def sample(self, prompts: list[str], seeds: list[int], steps: int, text: str = "compact",
               guidance: float = GUIDANCE) -> np.ndarray:
        """uint8 (N,H,W,3) images; text is "compact" (word ids, padding = no text) or "minilm" (vectors,
        zero = no text, as in training)."""
        compact = text == "compact"
        condition = self._tokens if compact else self._vectors
        forward = self._forward_tokens if compact else self._forward_vectors
        pad = self.tokenizer.pad_id

        def run(x, cond):
            uncond = np.full_like(cond, pad) if compact else np.zeros_like(cond)
            return cfg_euler(forward, x, cond, uncond, guidance, steps, SHIFT)

        return sample_in_chunks(prompts, seeds, condition, self.shape, run, (-1.0, 1.0))


def parse_row(row: str) -> tuple[str, int, float]:
    """"compact-50" -> ("compact", 50, GUIDANCE); "minilm-10-g5" -> ("minilm", 10, 5.0)."""
    parts = row.split("-")
    if len(parts) not in (2, 3) or parts[0] not in ("compact", "minilm") or (len(parts) == 3 and not parts[2].startswith("g")):
        raise ValueError(f"row {row!r}: expected TEXT-STEPS[-gSCALE], TEXT compact or minilm")
    return parts[0], int(parts[1]), float(parts[2][1:]) if len(parts) == 3 else GUIDANCE


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="v2 teacher snapshot or checkpoint")
    p.add_argument("--encoder", default=ENCODER_DIR)
    p.add_argument("--style", default="noto", help="reference art of FD/KID and the rank (models/v2/sources.py)")
    p.add_argument("--limit", type=int, default=256, help="specific prompts (a seeded subset; 0 = all 1,911)")
    p.add_argument("--diversity-prompts", type=int, default=32)
    p.add_argument("--free-prompts", type=int, default=len(FREE_PROMPTS))
    p.add_argument("--rows", default="compact-50,minilm-50,compact-4",
                   help="comma-separated TEXT-STEPS[-gSCALE] rows, TEXT compact or minilm, SCALE the CFG scale "
                        f"(default {GUIDANCE}, the distillation's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    teacher = SnapshotTeacher(a.teacher, a.encoder)
    out_dir = a.out or os.path.join(RESULTS, f"probe-{teacher.step}")
    os.makedirs(out_dir, exist_ok=True)
    ev = Evaluation(a.style, teacher.shape[1], a.limit or None, 32, a.diversity_prompts, a.free_prompts)
    results = {}
    for row in a.rows.split(","):
        text, steps, guidance = parse_row(row)
        name = f"teacher-{steps} ({'MiniLM' if text == 'minilm' else 'compact'}" + (
            f", CFG {guidance:g})" if guidance != GUIDANCE else ")")
        timing, images = run_method(ev, lambda pr, sd, t=text, n=steps, g=guidance: teacher.sample(pr, sd, n, t, g))
        results[name] = {**ev.score(images["specific"], images["diverse"]), **timing}
        grid_uint8(images["free"], len(ev.free), scale=1).save(os.path.join(out_dir, f"free-{row}.png"))
        print(name, json.dumps(results[name]), flush=True)
    meta = {"teacher": a.teacher, "teacher_step": teacher.step, "style": a.style, "prompts": len(ev.prompts),
            "references": len(ev.reference), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    table = format_table(results, FeatureSpaces.names, base_name=next(iter(results)))
    table += ["", f"teacher step {teacher.step}; {meta['prompts']} specific prompts (rank among "
              f"{meta['references']} base emoji); {meta['date']}; ratios against the first row."]
    return write_results(out_dir, meta, results, table)


if __name__ == "__main__":
    main()
