"""Export default model v2 the way v1 ships: a model directory (teacher.onnx, student.onnx, tokenizer.json,
manifest.json, NOTICE) that the Node backend, the worker's edge path and the browser load unchanged, then
check it: onnxruntime against torch on the parity fixtures written beside it.

  .toolchain/torch-py/bin/python -m models.v2.export --teacher models/v2/snapshots/teacher.pt \\
      --student models/runs/v2-student/checkpoints/last.pt --out models/piflow-emoji-v2

The v2 networks condition on a 384-d sentence vector (all-MiniLM-L6-v2 in training). The product has no
sentence encoder: it sends the word ids of the manifest's tokenizer. So the compact text encoder of
models/v2/text-encoder (word tokenizer + word vectors + MLP -> 384-d, distilled from MiniLM) is folded
into both graphs (WithTextEncoder): inputs stay x (B,3,64,64), sigma (B), tokens (B,16) int64, and
tokenizer.json is the compact encoder's. The empty prompt (all padding) encodes to the zero vector, the
networks' "no text" of classifier-free guidance, so the manifest's CFG rule is v1's.

Everything else is models/recipe/export.py (fp16 initialisers, manifest with sha256/bytes, fixtures).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import numpy as np
import torch
from torch import nn

from models.recipe.export import ModelInfo, load_net, parity_inputs, write_fixtures, write_model_dir
from models.recipe.tokenizer import Tokenizer
from models.v2.sources import ROOT
from models.v2.text import ENCODER_DIR, load_compact

MODEL_ID = "piflow-emoji-v2"
NOTICE = os.path.join(ROOT, "models", "v2", "NOTICE")
FIXTURES = os.path.join(ROOT, "models", "v2", "fixtures")
INFO = ModelInfo(
    MODEL_ID,
    "piflow emoji v2 64x64 (pi-Flow GM student, K=8, distilled by pi-ID; Noto, Twemoji, Fluent styles)",
    "Emoji artwork: Noto Emoji by Google (Apache-2.0) via emoji-datasource-google (MIT); Twemoji by Twitter, "
    "Inc and other contributors (CC-BY 4.0) via emoji-datasource-twitter (MIT); Fluent Emoji Flat by Microsoft "
    "(MIT) via @iconify-json/fluent-emoji-flat. Keywords: emojibase-data (MIT, CLDR annotations). Text encoder "
    "distilled from all-MiniLM-L6-v2 (Apache-2.0). Weights trained by the piflow recipe in models/v2. See NOTICE.",
    (1, 2, 4),  # 64 px native: 128 and 256 are 2x and 4x of real pixels
)


class WithTextEncoder(nn.Module):
    """net(x, sigma, encoder(tokens)): a v2 network behind the compact text encoder, so it takes the
    product's word ids; `cfg` is the network's (the exporter reads sizes and K from it)."""

    def __init__(self, encoder: nn.Module, net: nn.Module):
        super().__init__()
        self.encoder, self.net, self.cfg = encoder, net, net.cfg

    def forward(self, x, sigma, tokens):
        return self.net(x, sigma, self.encoder(tokens))


def notice_text() -> str:
    head = (f"{MODEL_ID} model (student.onnx, teacher.onnx, tokenizer.json)\n"
            "The graphs contain the compact text encoder of models/v2/text-encoder (distilled from\n"
            "all-MiniLM-L6-v2); tokenizer.json is its vocabulary. Attributions of everything they were made from:\n\n")
    with open(NOTICE, encoding="utf-8") as f:
        return head + f.read()


def load_v2(teacher_path: str, student_path: str, encoder_dir: str) -> tuple[nn.Module, nn.Module, dict, dict]:
    """Teacher (snapshot or checkpoint) and student checkpoint, each behind the compact encoder, in eval mode;
    plus the manifest's training section and the distillation settings."""
    teacher, tck = load_net(teacher_path)
    student, sck = load_net(student_path)
    for net, ck in ((teacher, tck), (student, sck)):
        if net.cfg.text_input != "vector" or net.cfg.image_size != 64:
            raise ValueError(f"not a v2 network (64 px, text vector): {ck['config']}")
    piid = sck.get("piid", {})
    if piid.get("teacher_step") not in (None, int(tck["step"])):
        raise ValueError(f"the student was distilled from teacher step {piid['teacher_step']}, "
                         f"{teacher_path} is step {tck['step']}")
    encoder, _ = load_compact(encoder_dir)
    for p in encoder.parameters():
        p.requires_grad_(False)
    training = {"teacherSteps": int(tck["step"]), "studentSteps": int(sck["step"]), "studentInit": "teacher",
                "distill": piid, "textEncoder": "compact (models/v2/text-encoder) of all-MiniLM-L6-v2, in-graph"}
    return (WithTextEncoder(encoder, teacher).eval(), WithTextEncoder(encoder, student).eval(), training, piid)


def export_v2(teacher_path: str, student_path: str, out_dir: str, fixtures_dir: str = FIXTURES,
              encoder_dir: str = ENCODER_DIR, model_id: str = MODEL_ID) -> dict:
    """Writes the model directory and its two parity fixtures; returns the manifest."""
    torch.manual_seed(0)
    teacher, student, training, piid = load_v2(teacher_path, student_path, encoder_dir)
    guidance, shift = float(piid.get("guidance", 3.0)), float(piid.get("shift", 3.2))
    tokenizer = os.path.join(encoder_dir, "tokenizer.json")
    manifest = write_model_dir(teacher, student, tokenizer, out_dir, training, guidance, shift,
                               info=dataclasses.replace(INFO, id=model_id), notice=notice_text())
    write_fixtures(os.path.join(fixtures_dir, "onnx-parity.json"), teacher, student, Tokenizer.load(tokenizer),
                   shift)
    return manifest


def fixture_excess(got: np.ndarray, ref: dict, atol: float, rtol: float) -> float:
    """Largest |got - ref| beyond atol + rtol*|ref| over the fixture's strided samples (<= 0: within)."""
    exp = np.asarray(ref["samples"], dtype=np.float64)
    sampled = got.reshape(-1)[:: ref["stride"]].astype(np.float64)
    return float((np.abs(sampled - exp) - (atol + rtol * np.abs(exp))).max())


def check_parity(model_dir: str, fixtures_dir: str = FIXTURES) -> dict:
    """onnxruntime (CPU) on the exported files against the torch fixtures, with the tolerances they carry
    (the checks of models/js/onnx-parity.test.ts and models/eval/tests/test_generate.py): every output of
    both networks at the fixture inputs, and a whole 4-NFE sample through the manifest (models/eval's
    OnnxModel, the product's noise, schedule and substeps). Raises AssertionError naming what differs."""
    from models.eval.generate import OnnxModel  # onnxruntime: the torch-py environment only

    with open(os.path.join(fixtures_dir, "onnx-parity.json"), encoding="utf-8") as f:
        fx = json.load(f)
    with open(os.path.join(fixtures_dir, "sampling-parity.json"), encoding="utf-8") as f:
        sfx = json.load(f)
    model = OnnxModel(model_dir)
    x, sigma, tokens = parity_inputs(model.tokenizer, model.shape[1])
    if tokens.tolist() != fx["tokens"]:
        raise AssertionError(f"{model_dir}: tokenizer gives {tokens.tolist()}, the fixture {fx['tokens']}")
    feeds = {"x": x.numpy(), "sigma": sigma.numpy(), "tokens": tokens.numpy()}
    atol, rtol = fx["tolerance"]["atol"], fx["tolerance"]["rtol"]
    report = {}
    for role, sess in (("teacher", model.teacher_session), ("student", model.student_session)):
        names = [o.name for o in sess.get_outputs()]
        for name, got in zip(names, sess.run(None, feeds)):
            ref = fx[role][name]
            if list(got.shape) != ref["shape"]:
                raise AssertionError(f"{role}.{name}: shape {list(got.shape)}, torch {ref['shape']}")
            report[f"{role}.{name}"] = excess = fixture_excess(got, ref, atol, rtol)
            if excess > 0:
                raise AssertionError(f"{role}.{name}: onnxruntime exceeds atol {atol} + rtol {rtol} by {excess:.3g}")
    sample = model.student([sfx["prompt"]] * len(sfx["seeds"]), sfx["seeds"], sfx["nfe"], latents=True)
    report["sample"] = excess = fixture_excess(sample, sfx["x"], sfx["tolerance"]["atol"], 0.0)
    if list(sample.shape) != sfx["x"]["shape"] or excess > 0:
        raise AssertionError(f"4-NFE sample: shape {list(sample.shape)} vs {sfx['x']['shape']}, excess {excess:.3g}")
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="v2 teacher snapshot or checkpoint (models.v2.train_teacher)")
    p.add_argument("--student", required=True, help="v2 student checkpoint (models.recipe.distill --v2)")
    p.add_argument("--out", required=True, help="model directory to write (e.g. models/piflow-emoji-v2)")
    p.add_argument("--id", default=MODEL_ID)
    p.add_argument("--fixtures", default=FIXTURES, help="where onnx-parity.json and sampling-parity.json go")
    p.add_argument("--encoder", default=ENCODER_DIR, help="compact text encoder (compact.pt, tokenizer.json)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    m = export_v2(a.teacher, a.student, a.out, a.fixtures, a.encoder, a.id)
    print(json.dumps({k: {"bytes": v["bytes"], "sha256": v["sha256"]} for k, v in m["files"].items()}))
    if not a.no_check:
        print(json.dumps({"parity_excess": check_parity(a.out, a.fixtures)}))


if __name__ == "__main__":
    main()
