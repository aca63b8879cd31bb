"""Sample grids for eyeballing and for models/README.md: one row per prompt, columns = seeds.

  /usr/bin/python3 -m models.eval.samples --teacher models/runs/teacher/checkpoints/last.pt \
      [--student models/runs/student/checkpoints/last.pt] --out models/eval/results

Writes teacher50.png (50-step Euler, CFG), teacher4.png (4-step Euler, CFG) and student4.png
(pi-Flow GM, 4 NFE) for the same prompts and initial noise.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from PIL import Image

from models.recipe.common import MODEL_DIR
from models.recipe.distill import cfg_teacher
from models.recipe.export import load_net
from models.recipe.flow import sample_euler, sample_gm
from models.recipe.tokenizer import Tokenizer

PROMPTS = ["grinning face", "red heart", "cat face", "pizza", "flag france", "rocket", "sun", "thumbs up"]


def to_grid(x: torch.Tensor, rows: int, scale: int = 2) -> Image.Image:
    return grid_uint8(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy(), rows, scale)


def grid_uint8(img: np.ndarray, rows: int, scale: int = 2) -> Image.Image:
    """uint8 (N,H,W,3), N = rows * columns, row-major -> one image, upscaled by nearest neighbour."""
    n, h, w, _ = img.shape
    cols = n // rows
    g = img.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    return Image.fromarray(g).resize((cols * w * scale, rows * h * scale), Image.NEAREST)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", default=None)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tokenizer.json"))
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--shift", type=float, default=3.2)
    p.add_argument("--skip-50", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(2)
    tok = Tokenizer.load(a.tokenizer)
    os.makedirs(a.out, exist_ok=True)
    prompts = [q for q in PROMPTS for _ in range(a.seeds)]
    tokens = torch.tensor([tok.encode(q) for q in prompts])
    noise = torch.randn(len(prompts), 3, 32, 32, generator=torch.Generator().manual_seed(1234))
    teacher, _ = load_net(a.teacher)
    u = cfg_teacher(teacher, tokens, a.guidance)
    with torch.no_grad():
        if not a.skip_50:
            to_grid(sample_euler(u, noise.clone(), 50, a.shift), len(PROMPTS)).save(os.path.join(a.out, "teacher50.png"))
        to_grid(sample_euler(u, noise.clone(), 4, a.shift), len(PROMPTS)).save(os.path.join(a.out, "teacher4.png"))
        if a.student:
            student, _ = load_net(a.student)
            x = sample_gm(lambda x, s: student(x, s, tokens), noise.clone(), 4, a.shift, 0.5, 128, 1e-4)
            to_grid(x, len(PROMPTS)).save(os.path.join(a.out, "student4.png"))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
