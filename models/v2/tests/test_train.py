"""The v2 teacher trainer on a tiny configuration: real data (4 emoji x 3 styles), real MiniLM caption
embeddings, 64 px pixel-space net with the patch-4 stem; resume from the checkpoint and from the small
fp16 snapshot (needs the torch-py environment)."""

from __future__ import annotations

import json
import os
import tempfile
import unittest

import torch

from models.v2 import train_teacher
from models.v2.tests.support import tiny_v2_data


def _log(run: str) -> list[dict]:
    with open(os.path.join(run, "train.log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


class TrainTeacherTest(unittest.TestCase):
    def test_train_resume_and_restart_from_the_snapshot(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = tiny_v2_data(tmp)
            run, snap = os.path.join(tmp, "run"), os.path.join(tmp, "snap.pt")
            args = ["--run", run, "--data", data, "--minutes", "10", "--batch", "4", "--channels", "8",
                    "--log-every", "1", "--snapshot", snap]
            train_teacher.main([*args, "--max-steps", "3"])
            ck = torch.load(os.path.join(run, "checkpoints", "last.pt"), map_location="cpu")
            self.assertEqual(ck["step"], 3)
            self.assertEqual((ck["config"]["image_size"], ck["config"]["patch"]), (64, 4))
            train_teacher.main([*args, "--max-steps", "4"])  # resumes the full state
            self.assertTrue(any(r.get("event") == "resume" and r["step"] == 3 for r in _log(run)))
            sn = torch.load(snap, map_location="cpu")
            self.assertEqual(sn["step"], 4)
            self.assertTrue(all(v.dtype == torch.float16 for v in sn["ema"].values()))
            run2 = os.path.join(tmp, "run2")  # another machine: only the committed snapshot is there
            train_teacher.main(["--run", run2, *args[2:], "--max-steps", "6", "--resume-snapshot", snap,
                                "--snapshot", os.path.join(tmp, "snap2.pt")])
            log2 = _log(run2)
            self.assertTrue(any(r.get("event") == "resume-snapshot" and r["step"] == 4 for r in log2))
            self.assertEqual(log2[-1]["step"], 6)
            losses = [r["loss"] for r in log2 if "loss" in r]
            self.assertTrue(all(0.0 < v < 10.0 for v in losses), losses)


if __name__ == "__main__":
    unittest.main()
