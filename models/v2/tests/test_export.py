"""Export of default model v2 (models.v2.export) on a tiny run, end to end: real data (4 emoji x 3 styles),
real MiniLM caption embeddings, a 64 px teacher (channels 8) from the v2 trainer and a K=8 GM student
distilled from its snapshot (as test_distill) -> a model directory -> onnxruntime matches torch, the
manifest passes the product's parseManifest (TypeScript), and a real Node backend process serves it: the
backend protocol conformance CLI passes and its forward equals torch (needs the torch-py env and Node).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import unittest
import urllib.request

import numpy as np
import onnxruntime as ort
import torch
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from models.recipe import distill
from models.recipe.export import parity_inputs, round_weights_fp16, sha256_file
from models.v2 import export, text, train_teacher
from models.v2.sources import ROOT
from models.v2.tests.support import tiny_v2_data

SECRET = "v2-export-test"


def node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """tsx from the repository's node_modules, with Node 22 first on PATH (scripts/env.sh)."""
    cmd = ["bash", "-c", 'source scripts/env.sh >&2 && exec node_modules/.bin/tsx "$@"', "tsx", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


class Backend:
    """backend/src/main.ts on a free port in its own process group, stopped (the whole group) on exit."""

    def __init__(self, models_dir: str):
        cmd = ["bash", "-c", 'source scripts/env.sh >&2 && exec node_modules/.bin/tsx backend/src/main.ts "$@"',
               "tsx", "--port", "0", "--models-dir", models_dir, "--secret", SECRET, "--intra-op-threads", "1"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline()  # exactly one line on stdout, once it serves
        if "listening on " not in line:
            self.close()
            raise AssertionError(f"backend did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.url = line.split("listening on ", 1)[1].strip()

    def request(self, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, headers={
            "X-Piflow-Backend-Secret": SECRET, "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, res.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


class ExportV2Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = cls.tmp.name
        data = tiny_v2_data(tmp)
        snap = os.path.join(tmp, "teacher.pt")
        train_teacher.main(["--run", os.path.join(tmp, "teacher"), "--data", data, "--minutes", "10", "--batch", "4",
                            "--channels", "8", "--max-steps", "2", "--snapshot", snap,
                            "--lr", "0.05", "--warmup", "1"])  # big steps: the text must visibly matter
        run = os.path.join(tmp, "student")
        distill.main(["--v2", "--teacher", snap, "--run", run, "--data", data, "--minutes", "10", "--batch", "2",
                      "--k", "8", "--total-substeps", "8", "--max-steps", "2"])
        cls.student_ckpt = os.path.join(run, "checkpoints", "last.pt")
        cls.snapshot = snap
        cls.models = os.path.join(tmp, "models")
        cls.model_dir = os.path.join(cls.models, export.MODEL_ID)
        cls.fixtures = os.path.join(tmp, "fixtures")
        export.main(["--teacher", snap, "--student", cls.student_ckpt, "--out", cls.model_dir,
                     "--fixtures", cls.fixtures, "--no-check"])
        with open(os.path.join(cls.model_dir, "manifest.json"), encoding="utf-8") as f:
            cls.manifest = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_onnxruntime_matches_torch_on_the_fixtures_and_a_whole_sample(self):
        report = export.check_parity(self.model_dir, self.fixtures)
        self.assertEqual(set(report), {"teacher.u", "student.means_u", "student.logweights", "student.logstds",
                                       "sample"})
        self.assertTrue(all(v <= 0 for v in report.values()), report)
        with open(os.path.join(self.fixtures, "onnx-parity.json"), encoding="utf-8") as f:
            fx = json.load(f)
        self.assertEqual(fx["student"]["means_u"]["shape"], [2, 8, 3, 64, 64])
        self.assertGreater(fx["student"]["means_u"]["meanAbs"], 1e-3)  # not an all-zero network

    def test_a_text_whitened_teacher_exports_to_the_same_function(self):
        from models.recipe.export import export_onnx, load_net
        from models.recipe.nets import with_whitened_text

        net, _ = load_net(self.snapshot)
        stored = np.load(os.path.join(self.tmp.name, "data", "text-embeddings.npy"))
        whitened = with_whitened_text(net, torch.from_numpy(stored.reshape(-1, text.DIM).astype(np.float32)), 1e-3)
        encoder, tok = text.load_compact()
        graph = export.WithTextEncoder(encoder, round_weights_fp16(whitened.eval())).eval()
        path = os.path.join(self.tmp.name, "whitened-teacher.onnx")
        export_onnx(graph, path, ["u"], fp16=True, max_length=tok.max_length)
        x = parity_inputs(tok, 64)[0][:1].repeat(2, 1, 1, 1)  # one state: a prompt and the empty one
        sigma = torch.tensor([0.6, 0.6])
        ids = torch.tensor([tok.encode("red heart"), [tok.pad_id] * tok.max_length])
        with torch.no_grad():
            want = export.WithTextEncoder(encoder, round_weights_fp16(net))(x, sigma, ids).numpy()
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {"x": x.numpy(), "sigma": sigma.numpy(), "tokens": ids.numpy()})[0]
        np.testing.assert_allclose(got, want, atol=2e-3, rtol=2e-2)  # fp16 weights of two parametrisations
        self.assertFalse(np.allclose(got[0], want[1], atol=2e-3, rtol=2e-2))  # the prompt matters at this tolerance

    def test_the_graph_encodes_the_prompt_and_the_empty_prompt_is_the_zero_vector(self):
        teacher, _, _, _ = export.load_v2(self.snapshot, self.student_ckpt, text.ENCODER_DIR)
        encoder, tok = text.load_compact()
        bare = round_weights_fp16(teacher.net)  # the network alone, as the ONNX initialisers hold it
        sess = ort.InferenceSession(os.path.join(self.model_dir, "teacher.onnx"), providers=["CPUExecutionProvider"])
        x = parity_inputs(tok, 64)[0][:1].repeat(2, 1, 1, 1)  # one state, two prompts
        sigma = torch.tensor([0.6, 0.6])
        ids = torch.tensor([tok.encode(p) for p in ["red heart", "green frog"]])
        empty = torch.zeros_like(ids)
        with torch.no_grad():
            vec = encoder(ids)
            self.assertEqual(encoder(empty).abs().max().item(), 0.0)  # all padding -> the zero vector
            want = bare(x, sigma, vec).numpy()
            want_empty = bare(x, sigma, torch.zeros(2, text.DIM)).numpy()  # what the trainer's CFG drops to
        def run(tokens: torch.Tensor) -> np.ndarray:
            return sess.run(None, {"x": x.numpy(), "sigma": sigma.numpy(), "tokens": tokens.numpy()})[0]

        got, got_empty = run(ids), run(empty)
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-3)
        np.testing.assert_allclose(got_empty, want_empty, atol=2e-4, rtol=2e-3)
        # not vacuous: at this tolerance another prompt's (or no prompt's) output would not pass
        self.assertFalse(np.allclose(got[0], want[1], atol=2e-4, rtol=2e-3))
        self.assertFalse(np.allclose(got, want_empty, atol=2e-4, rtol=2e-3))

    def test_the_manifest_parses_with_the_products_parse_manifest(self):
        run = node("scripts/parse-manifest.ts", self.model_dir)
        self.assertEqual(run.returncode, 0, run.stderr[-2000:])
        m = json.loads(run.stdout)
        self.assertEqual(m["id"], "piflow-emoji-v2")
        self.assertEqual(m["latent"], {"channels": 3, "height": 64, "width": 64})
        self.assertEqual(m["image"]["outputSizes"], [64, 128, 256])
        self.assertEqual(m["policy"], {"type": "gm", "k": 8})
        self.assertEqual(m["sampling"]["perNfe"]["4"], {"shift": 3.2, "finalStepSizeScale": 0.5,
                                                        "temperature": "auto", "totalSubsteps": 128, "onnx": "student"})
        self.assertEqual(m["text"], {"tokenizer": "tokenizer", "maxLength": 16, "padId": 0, "encoder": "in-network"})
        self.assertEqual([i["name"] for i in m["files"]["student"]["inputs"]], ["x", "sigma", "tokens"])
        self.assertEqual(m["files"]["student"]["outputs"][0]["shape"], ["B", 8, 3, 64, 64])
        for entry in m["files"].values():
            self.assertEqual(sha256_file(os.path.join(self.model_dir, entry["path"])),
                             (entry["sha256"], entry["bytes"]))
        self.assertEqual((m["training"]["teacherSteps"], m["training"]["studentSteps"]), (2, 2))
        self.assertEqual((m["files"]["notice"]["path"], m["files"]["notice"]["role"]), ("NOTICE", "notice"))
        with open(os.path.join(self.model_dir, "NOTICE"), encoding="utf-8") as f:
            notice = f.read()
        for credit in ("Noto Emoji", "Twemoji", "CC-BY 4.0", "Fluent Emoji Flat", "all-MiniLM-L6-v2"):
            self.assertIn(credit, notice)
        broken = os.path.join(self.tmp.name, "broken")
        os.makedirs(broken, exist_ok=True)
        with open(os.path.join(broken, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump({**self.manifest, "sampling": {**self.manifest["sampling"], "defaultNfe": 2}}, f)
        refused = node("scripts/parse-manifest.ts", broken)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("defaultNfe", refused.stderr)

    def test_the_training_probe_samples_what_the_exported_teacher_samples(self):
        from models.eval.generate import OnnxModel
        from models.v2 import probe

        prompts, seeds = ["red apple", "red apple", "grinning face", ""], [1, 2, 1, 1]
        teacher = probe.SnapshotTeacher(self.snapshot)
        got = teacher.sample(prompts, seeds, 4)
        want = OnnxModel(self.model_dir, threads=1).teacher(prompts, seeds, 4)
        self.assertEqual(got.shape, (4, 64, 64, 3))
        # fp32 torch against the fp16-initialiser graph: a few levels at most, not another image
        self.assertLessEqual(np.abs(got.astype(int) - want.astype(int)).max(), 3)
        self.assertGreater(np.abs(got[0].astype(int) - got[1].astype(int)).mean(), 5)  # seeds matter
        minilm = teacher.sample(prompts, seeds, 4, text="minilm")
        self.assertTrue((minilm[3] == got[3]).all())  # no text is the zero vector on both rows
        self.assertGreater(np.abs(minilm[:3].astype(int) - got[:3].astype(int)).max(), 0)

    def test_a_node_backend_serves_it_conformance_and_forward_equals_torch(self):
        backend = Backend(self.models)
        try:
            status, body = backend.request(f"/v1/models/{export.MODEL_ID}")
            entry = json.loads(body)
            self.assertEqual(status, 200)
            self.assertEqual(entry["text"]["vocabSize"], len(text.load_compact()[1].vocab))
            conf = node("test/backend-conformance/cli.ts", backend.url, "--secret", SECRET)
            self.assertEqual(conf.returncode, 0, conf.stdout[-4000:] + conf.stderr[-2000:])
            self.assertRegex(conf.stdout, r"\n\d+ passed, 0 failed")
            self.assertIn("ok   forward returns the policy tensors", conf.stdout)
            # the product's forward of the fixture inputs, against torch (same tolerance as onnxruntime)
            with open(os.path.join(self.fixtures, "onnx-parity.json"), encoding="utf-8") as f:
                fx = json.load(f)
            x, sigma, _ = parity_inputs(text.load_compact()[1], 64)
            req = save_safetensors({"x": x.numpy(), "sigma": sigma.numpy(),
                                    "tokens": np.asarray(fx["tokens"], dtype=np.int64)})
            status, body = backend.request(f"/v1/models/{export.MODEL_ID}/forward", req)
            self.assertEqual(status, 200)
            out = load_safetensors(body)
            self.assertEqual(set(out), {"means_u", "logweights", "logstds"})
            tol = fx["tolerance"]
            for name, got in out.items():
                self.assertEqual(list(got.shape), fx["student"][name]["shape"], name)
                self.assertLessEqual(export.fixture_excess(got, fx["student"][name], tol["atol"], tol["rtol"]), 0, name)
        finally:
            backend.close()


if __name__ == "__main__":
    unittest.main()
