"""pi-ID distillation of a v2 student (models.recipe.distill --v2) on a tiny configuration: real data
(4 emoji x 3 styles), real MiniLM caption embeddings, a 64 px teacher snapshot from the v2 trainer; the
student is a GM head over the same trunk, trained a few steps and resumed (needs the torch-py env)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import unittest

import torch

from models.recipe import distill
from models.recipe.export import load_net
from models.v2 import train_teacher
from models.v2.tests.support import tiny_v2_data


class DistillV2Test(unittest.TestCase):
    def test_distill_a_gm_student_from_a_v2_teacher_snapshot_and_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = tiny_v2_data(tmp)
            snap = os.path.join(tmp, "teacher.pt")
            train_teacher.main(["--run", os.path.join(tmp, "teacher"), "--data", data, "--minutes", "10",
                                "--batch", "4", "--channels", "8", "--max-steps", "2", "--snapshot", snap])
            run = os.path.join(tmp, "student")
            args = ["--v2", "--teacher", snap, "--run", run, "--data", data, "--minutes", "10", "--batch", "2",
                    "--k", "2", "--total-substeps", "8", "--log-every", "1"]
            distill.main([*args, "--max-steps", "2"])
            student_snap = os.path.join(tmp, "student.pt")
            distill.main([*args, "--max-steps", "3", "--snapshot", student_snap])  # resumes the full state
            ck = torch.load(os.path.join(run, "checkpoints", "last.pt"), map_location="cpu")
            small = torch.load(student_snap, map_location="cpu")  # what comes back from the device machine
            self.assertEqual((small["kind"], small["step"], small["piid"]), ("student-snapshot", 3, ck["piid"]))
            for name, weight in ck["ema"].items():
                self.assertTrue(torch.equal(small["ema"][name], weight.half()), name)
            net, _ = load_net(student_snap)  # the exports read it as they read a checkpoint
            self.assertEqual(net.cfg.head, "gm")
            self.assertEqual((ck["kind"], ck["step"]), ("student", 3))
            self.assertEqual((ck["config"]["head"], ck["config"]["k"], ck["config"]["image_size"]), ("gm", 2, 64))
            self.assertEqual(ck["config"]["text_input"], "vector")
            with open(os.path.join(run, "train.log.jsonl"), encoding="utf-8") as f:
                log = [json.loads(line) for line in f]
            self.assertTrue(any(r.get("event") == "resume" and r["step"] == 2 for r in log))
            losses = [r["loss"] for r in log if "loss" in r]
            self.assertEqual(len(losses), 3)
            self.assertTrue(all(math.isfinite(v) and v > 0.0 for v in losses), losses)

    @unittest.skipUnless(torch.cuda.is_available(), "needs a CUDA GPU (the device machine); none here")
    def test_distill_on_a_gpu_and_bring_back_the_snapshot(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = tiny_v2_data(tmp)
            snap = os.path.join(tmp, "teacher.pt")
            train_teacher.main(["--run", os.path.join(tmp, "teacher"), "--data", data, "--minutes", "10",
                                "--batch", "4", "--channels", "8", "--max-steps", "2", "--snapshot", snap,
                                "--device", "cuda"])
            student_snap = os.path.join(tmp, "student.pt")
            distill.main(["--v2", "--teacher", snap, "--run", os.path.join(tmp, "student"), "--data", data,
                          "--minutes", "10", "--batch", "2", "--k", "2", "--total-substeps", "8",
                          "--log-every", "1", "--max-steps", "2", "--device", "cuda", "--snapshot", student_snap])
            net, small = load_net(student_snap)
            self.assertEqual(small["step"], 2)
            self.assertTrue(all(v.device.type == "cpu" for v in small["ema"].values()))

    def test_device_cuda_needs_the_v2_data(self):
        with self.assertRaises(SystemExit) as refused:
            distill.main(["--teacher", "t.pt", "--run", "r", "--device", "cuda"])
        self.assertIn("--v2", str(refused.exception))


if __name__ == "__main__":
    unittest.main()
