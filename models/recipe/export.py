"""Export teacher + GM student to ONNX (opset 17, dynamic batch, fp16 initialisers + Cast), write
manifest.json with sha256/bytes, and small torch parity fixtures for the onnxruntime tests.

  /usr/bin/python3 -m models.recipe.export --teacher models/runs/teacher/checkpoints/last.pt \
      --student models/runs/student/checkpoints/last.pt --out models/piflow-emoji

Without --student, the student is the teacher's network with a fresh GM head (student_from_teacher):
an untrained stand-in, flagged in the manifest's training section.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import io
import json
import os
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from . import noise
from .common import MODEL_DIR, ROOT
from .flow import sample_gm
from .nets import EmojiNet, NetConfig, student_from_teacher
from .tokenizer import Tokenizer

OPSET = 17
K_DEFAULT = 8
PARITY_PROMPTS = ["grinning face", "red heart"]
PARITY_SIGMAS = [0.7, 0.25]
FIXTURE_STRIDE = 61  # keep every 61st output element: a few KB per tensor, still covers every channel

ATTRIBUTION = (
    "Emoji artwork: Noto Emoji by Google (Apache-2.0), via the npm package emoji-datasource-google "
    "(MIT, iamcal/emoji-data). Keywords: emojibase-data (MIT, CLDR annotations). "
    "Model weights trained from that data by the piflow recipe in models/recipe."
)


class StudentWrapper(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, sigma, tokens):
        return self.net(x, sigma, tokens)


def load_net(path: str) -> tuple[EmojiNet, dict]:
    """EMA weights of a checkpoint, in eval mode; refuses non-finite weights."""
    ck = torch.load(path, map_location="cpu")
    net = EmojiNet(NetConfig.from_dict(ck["config"]))
    bad = [k for k, v in ck["ema"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: non-finite weights in {bad[:3]}")
    net.load_state_dict(ck["ema"])
    net.eval()
    return net, ck


def round_weights_fp16(net: torch.nn.Module) -> torch.nn.Module:
    """The torch twin of the fp16-initialiser ONNX (weights rounded to fp16, compute in fp32)."""
    net = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())
    return net


def _fp16_initialisers(model: onnx.ModelProto, min_elems: int = 16) -> onnx.ModelProto:
    """Store float32 initialisers as float16 followed by a Cast to float32 (halves the file; the
    graph still computes in float32)."""
    g = model.graph
    casts, keep = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type == onnx.TensorProto.FLOAT and arr.size >= min_elems:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    return model


def _legacy_exporter() -> dict:
    """torch >= 2.5 defaults to the dynamo exporter (needs onnxscript, which neither environment has);
    the TorchScript exporter, torch 1.13's only one, writes the same graphs for both recipes."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def export_onnx(net: torch.nn.Module, path: str, outputs: list[str], fp16: bool, max_length: int) -> None:
    x = torch.zeros(2, 3, net.cfg.image_size, net.cfg.image_size)
    sigma = torch.full((2,), 0.5)
    tokens = torch.zeros(2, max_length, dtype=torch.long)
    dyn = {n: {0: "B"} for n in ["x", "sigma", "tokens", *outputs]}
    buf = io.BytesIO()
    torch.onnx.export(
        StudentWrapper(net), (x, sigma, tokens), buf, opset_version=OPSET, input_names=["x", "sigma", "tokens"],
        output_names=outputs, dynamic_axes=dyn, do_constant_folding=True, **_legacy_exporter(),
    )
    model = onnx.load_from_string(buf.getvalue())
    if fp16:
        model = _fp16_initialisers(model)
    model.producer_name, model.producer_version, model.doc_string = "piflow-recipe", "1", ""
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def sha256_file(path: str) -> tuple[str, int]:
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha256(data).hexdigest(), len(data)


def parity_inputs(tok: Tokenizer, image_size: int):
    """Deterministic inputs reproducible in TypeScript: x[i] = 0.9*sin(0.1*i + 0.3) over the flat
    (2,3,H,W) index, float32-rounded."""
    n = 2 * 3 * image_size * image_size
    x = (0.9 * np.sin(0.1 * np.arange(n, dtype=np.float64) + 0.3)).astype(np.float32)
    x = torch.from_numpy(x).reshape(2, 3, image_size, image_size)
    sigma = torch.tensor(PARITY_SIGMAS, dtype=torch.float32)
    tokens = torch.tensor([tok.encode(p) for p in PARITY_PROMPTS], dtype=torch.long)
    return x, sigma, tokens


def _summary(t: torch.Tensor, stride: int = FIXTURE_STRIDE) -> dict:
    flat = t.detach().double().flatten()
    return {
        "shape": list(t.shape),
        "stride": stride,
        "samples": [round(float(v), 7) for v in flat[::stride]],
        "mean": float(flat.mean()),
        "meanAbs": float(flat.abs().mean()),
    }


def write_fixture(path: str, teacher, student, tok: Tokenizer) -> dict:
    x, sigma, tokens = parity_inputs(tok, teacher.cfg.image_size)
    with torch.no_grad():
        u = round_weights_fp16(teacher)(x, sigma, tokens)
        means_u, logweights, logstds = round_weights_fp16(student)(x, sigma, tokens)
    fix = {
        "note": "torch outputs (weights rounded to fp16, like the ONNX initialisers) for "
        "x[i]=0.9*sin(0.1*i+0.3) (flat, float32), sigma and prompts below; generated by models/recipe/export.py",
        "prompts": PARITY_PROMPTS,
        "sigma": PARITY_SIGMAS,
        "tokens": tokens.tolist(),
        "tolerance": {"atol": 2e-4, "rtol": 2e-3},
        "teacher": {"u": _summary(u)},
        "student": {"means_u": _summary(means_u), "logweights": _summary(logweights), "logstds": _summary(logstds)},
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fix, f, separators=(",", ":"))
        f.write("\n")
    return fix


SAMPLING_PROMPT = "red heart"
SAMPLING_SEEDS = [7, 8]


def write_sampling_fixture(path: str, student, tok: Tokenizer, shift: float) -> dict:
    """Torch 4-NFE GM sampling from the policy module's seeded noise (noise.randn, float32), the reference
    for the onnxruntime + @piflow/policy end-to-end parity test."""
    size = student.cfg.image_size
    n = 3 * size * size
    x = torch.from_numpy(np.stack([noise.randn(n, s).astype(np.float32) for s in SAMPLING_SEEDS]))
    x = x.reshape(len(SAMPLING_SEEDS), 3, size, size)
    tokens = torch.tensor([tok.encode(SAMPLING_PROMPT)] * len(SAMPLING_SEEDS), dtype=torch.long)
    net = round_weights_fp16(student)
    with torch.no_grad():
        out = sample_gm(lambda xx, sg: net(xx, sg, tokens), x, 4, shift, 0.5, 128, 1e-4)
    fix = {
        "note": "4-NFE GM sampling in torch (float32, fp16-rounded weights) from randn(C*H*W, seed) as float32; "
        "generated by models/recipe/export.py",
        "prompt": SAMPLING_PROMPT,
        "seeds": SAMPLING_SEEDS,
        "nfe": 4, "shift": shift, "finalStepSizeScale": 0.5, "totalSubsteps": 128, "temperature": "auto",
        "eps": 1e-4,
        "tolerance": {"atol": 5e-3, "pixelLevels": 2},
        "x": _summary(out, stride=7),
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fix, f, separators=(",", ":"))
        f.write("\n")
    return fix


def io_spec(cfg: NetConfig, role: str, max_length: int) -> tuple[list, list]:
    c, h, w = cfg.image_channels, cfg.image_size, cfg.image_size
    inputs = [
        {"name": "x", "dtype": "float32", "shape": ["B", c, h, w]},
        {"name": "sigma", "dtype": "float32", "shape": ["B"]},
        {"name": "tokens", "dtype": "int64", "shape": ["B", max_length]},
    ]
    if role == "teacher":
        return inputs, [{"name": "u", "dtype": "float32", "shape": ["B", c, h, w]}]
    k = cfg.k
    return inputs, [
        {"name": "means_u", "dtype": "float32", "shape": ["B", k, c, h, w]},
        {"name": "logweights", "dtype": "float32", "shape": ["B", k, 1, h, w]},
        {"name": "logstds", "dtype": "float32", "shape": ["B", 1, 1, 1, 1]},
    ]


@dataclass(frozen=True)
class ModelInfo:
    """What tells one exported model from another in its manifest."""

    id: str
    name: str
    attribution: str
    size_multipliers: tuple[int, ...]  # image.outputSizes = native size times these


V1 = ModelInfo("piflow-emoji", "piflow emoji 32x32 (pi-Flow GM student, K=8, distilled by pi-ID)", ATTRIBUTION,
               (1, 2, 4, 8))


def build_manifest(out_dir: str, tcfg: NetConfig, scfg: NetConfig, tok: Tokenizer, training: dict,
                   guidance: float, shift: float, info: ModelInfo = V1) -> dict:
    files = {}
    roles = [("student", "student", "student.onnx"), ("teacher", "teacher", "teacher.onnx"),
             ("tokenizer", "tokenizer", "tokenizer.json")]
    # A NOTICE beside the weights is listed too, so whoever publishes the model's files (the worker's
    # asset staging, a CDN) publishes the attribution with them: CC-BY art requires that it travel.
    if os.path.exists(os.path.join(out_dir, "NOTICE")):
        roles.append(("notice", "notice", "NOTICE"))
    for key, role, fname in roles:
        sha, nbytes = sha256_file(os.path.join(out_dir, fname))
        entry = {"path": fname, "sha256": sha, "bytes": nbytes, "role": role}
        if role in ("tokenizer", "notice"):
            entry["inputs"], entry["outputs"] = [], []
        else:
            entry["inputs"], entry["outputs"] = io_spec(scfg if role == "student" else tcfg, role, tok.max_length)
        files[key] = entry
    size = tcfg.image_size
    return {
        "schemaVersion": 1,
        "id": info.id,
        "name": info.name,
        "license": "Apache-2.0",
        "attribution": info.attribution,
        "policy": {"type": "gm", "k": scfg.k},
        "latent": {"channels": tcfg.image_channels, "height": size, "width": size},
        "image": {"height": size, "width": size, "outputSizes": [size * m for m in info.size_multipliers],
                  "valueRange": [-1, 1]},
        "sampling": {
            "nfeOptions": [4],
            "defaultNfe": 4,
            "eps": 1e-4,
            "perNfe": {"4": {"shift": shift, "finalStepSizeScale": 0.5, "temperature": "auto",
                             "totalSubsteps": 128, "onnx": "student"}},
        },
        "files": files,
        "text": {"tokenizer": "tokenizer", "maxLength": tok.max_length, "padId": tok.pad_id,
                 "encoder": "in-network"},
        # The student was distilled from the teacher at this CFG scale; it has no guidance input.
        "guidance": {"default": guidance, "min": guidance, "max": guidance, "input": None},
        "teacher": {"onnx": "teacher", "steps": 50, "shift": shift, "guidance": guidance,
                    "cfg": "caller: u = u(empty) + g*(u(prompt) - u(empty)), empty = all padId"},
        "integration": ["backend", "edge", "browser"],
        "training": training,
    }


def write_model_dir(teacher: torch.nn.Module, student: torch.nn.Module, tokenizer: str, out_dir: str,
                    training: dict, guidance: float, shift: float, fp16: bool = True, info: ModelInfo = V1,
                    notice: str | None = None) -> dict:
    """The model directory every path loads: tokenizer.json (copied from `tokenizer`), teacher.onnx,
    student.onnx, manifest.json (written last, atomically, with the files' sha256 and bytes) and, when
    given, NOTICE. teacher/student: modules of (x, sigma, tokens) with an EmojiNet's `cfg`."""
    tok = Tokenizer.load(tokenizer)
    os.makedirs(out_dir, exist_ok=True)
    if os.path.abspath(tokenizer) != os.path.abspath(os.path.join(out_dir, "tokenizer.json")):
        with open(tokenizer, "rb") as src, open(os.path.join(out_dir, "tokenizer.json"), "wb") as dst:
            dst.write(src.read())
    if notice is not None:
        with open(os.path.join(out_dir, "NOTICE"), "w", encoding="utf-8") as f:
            f.write(notice)
    export_onnx(teacher, os.path.join(out_dir, "teacher.onnx"), ["u"], fp16, tok.max_length)
    export_onnx(student, os.path.join(out_dir, "student.onnx"), ["means_u", "logweights", "logstds"], fp16,
                tok.max_length)
    manifest = build_manifest(out_dir, teacher.cfg, student.cfg, tok, training, guidance, shift, info)
    tmp = os.path.join(out_dir, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, "manifest.json"))
    return manifest


def write_fixtures(fixture: str, teacher: torch.nn.Module, student: torch.nn.Module, tok: Tokenizer,
                   shift: float) -> None:
    """onnx-parity.json at `fixture` and sampling-parity.json beside it."""
    write_fixture(fixture, teacher, student, tok)
    write_sampling_fixture(os.path.join(os.path.dirname(fixture), "sampling-parity.json"), student, tok, shift)


def export_all(teacher_ckpt: str, student_ckpt: str | None, out_dir: str, fixture: str | None,
               tokenizer: str, guidance: float, shift: float, fp16: bool = True, k: int = K_DEFAULT) -> dict:
    torch.manual_seed(0)
    teacher, tck = load_net(teacher_ckpt)
    training = {"teacherSteps": int(tck["step"]), "studentSteps": 0, "studentInit": "teacher + fresh GM head"}
    if student_ckpt:
        student, sck = load_net(student_ckpt)
        training.update(studentSteps=int(sck["step"]), studentInit="teacher", distill=sck.get("piid", {}))
    else:
        student = student_from_teacher(teacher, k)
        student.eval()
    manifest = write_model_dir(teacher, student, tokenizer, out_dir, training, guidance, shift, fp16)
    if fixture:
        write_fixtures(fixture, teacher, student, Tokenizer.load(tokenizer), shift)
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", default=None)
    p.add_argument("--out", default=MODEL_DIR)
    p.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tokenizer.json"))
    p.add_argument("--fixture", default=os.path.join(ROOT, "models", "fixtures", "onnx-parity.json"))
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--shift", type=float, default=3.2)
    p.add_argument("--fp32", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(2)
    m = export_all(a.teacher, a.student, a.out, a.fixture or None, a.tokenizer, a.guidance, a.shift,
                   fp16=not a.fp32)
    print(json.dumps({k: {"bytes": v["bytes"], "sha256": v["sha256"]} for k, v in m["files"].items()}))


if __name__ == "__main__":
    main()
