"""CI smoke test of the whole recipe on a tiny configuration (a few steps each), in a temp dir:
prepare (48 emoji) -> teacher (3 steps, 8 channels) -> pi-ID (2 steps, batch 4) -> export + manifest.
Never touches the shipped model. Prints a JSON summary (paths) on the last line.

  /usr/bin/python3 -m models.recipe.smoke [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from . import distill, prepare, train_teacher
from .export import export_all


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="piflow-smoke-")
    torch.set_num_threads(2)
    t0 = time.time()
    data, model = os.path.join(out, "data"), os.path.join(out, "model")
    tok = os.path.join(out, "tokenizer.json")
    info = prepare.prepare(data, tok, size=32, limit=48)
    train_teacher.main(["--run", os.path.join(out, "teacher"), "--data", data, "--tokenizer", tok,
                        "--max-steps", "3", "--minutes", "10", "--batch", "8", "--channels", "8",
                        "--log-every", "1"])
    teacher_ckpt = os.path.join(out, "teacher", "checkpoints", "last.pt")
    distill.main(["--teacher", teacher_ckpt, "--run", os.path.join(out, "student"), "--data", data,
                  "--tokenizer", tok, "--max-steps", "2", "--minutes", "10", "--batch", "4",
                  "--total-substeps", "16", "--log-every", "1"])
    # resume works: one more step from the checkpoint
    distill.main(["--teacher", teacher_ckpt, "--run", os.path.join(out, "student"), "--data", data,
                  "--tokenizer", tok, "--max-steps", "3", "--minutes", "10", "--batch", "4",
                  "--total-substeps", "16", "--log-every", "1"])
    manifest = export_all(teacher_ckpt, os.path.join(out, "student", "checkpoints", "last.pt"), model,
                          os.path.join(out, "fixture.json"), tok, guidance=3.0, shift=3.2)
    print(json.dumps({"out": out, "modelDir": model, "images": info["images"], "vocab": info["vocab"],
                      "studentSteps": manifest["training"]["studentSteps"], "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
