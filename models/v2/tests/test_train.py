"""The v2 teacher trainer on a tiny configuration: real data (4 emoji x 3 styles), real MiniLM caption
embeddings, 64 px pixel-space net with the patch-4 stem; resume from the checkpoint and from the small
fp16 snapshot (needs the torch-py environment)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
import torch

from models.v2 import train_teacher
from models.v2.sources import ROOT
from models.v2.tests.support import tiny_v2_data


def _log(run: str) -> list[dict]:
    with open(os.path.join(run, "train.log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _tiny_run(tmp: str) -> tuple[str, str, list[str]]:
    """(run dir, snapshot path, trainer flags) of a tiny teacher run on the tiny real data under tmp."""
    data = tiny_v2_data(tmp)
    run, snap = os.path.join(tmp, "run"), os.path.join(tmp, "snap.pt")
    return run, snap, ["--run", run, "--data", data, "--minutes", "10", "--batch", "4", "--channels", "8",
                       "--log-every", "1", "--snapshot", snap]


# the trainer as a user starts it, in a process of its own (with --workers, the parent of its workers)
TRAINER = [sys.executable, "-m", "models.v2.train_teacher"]
TWO_WORKERS = ["--workers", "2", "--threads", "1"]


class TrainTeacherTest(unittest.TestCase):
    def test_train_resume_and_restart_from_the_snapshot(self):
        with tempfile.TemporaryDirectory() as tmp:
            run, snap, args = _tiny_run(tmp)
            train_teacher.main([*args, "--max-steps", "3"])
            ck = torch.load(os.path.join(run, "checkpoints", "last.pt"), map_location="cpu")
            self.assertEqual(ck["step"], 3)
            self.assertEqual((ck["config"]["image_size"], ck["config"]["patch"]), (64, 4))
            self.assertEqual(ck["args"]["sigma_shift"], 3.2)  # the recipe's default since the A/B of 2026-12-04
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

    def test_two_workers_share_the_batch_and_a_single_process_resumes(self):
        with tempfile.TemporaryDirectory() as tmp:
            run, snap, args = _tiny_run(tmp)
            done = subprocess.run([*TRAINER, *args, "--max-steps", "3", *TWO_WORKERS],
                                  cwd=ROOT, capture_output=True, text=True, timeout=300)
            self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
            log = _log(run)
            self.assertIn({"world": 2, "batch": 4, "per_worker": 2},
                          [{k: r[k] for k in ("world", "batch", "per_worker")} for r in log if r.get("event") == "workers"])
            self.assertEqual([r["step"] for r in log if "loss" in r], [1, 2, 3])  # the chief alone logs
            self.assertEqual(torch.load(os.path.join(run, "checkpoints", "last.pt"), map_location="cpu")["step"], 3)
            train_teacher.main([*args, "--max-steps", "4"])  # one process picks the run up
            self.assertEqual(torch.load(snap, map_location="cpu")["step"], 4)

    def test_the_synthetic_set_loads_and_trains_as_the_real_one(self):
        from models.v2.data import V2Data
        from models.v2.synthetic import write_synthetic
        with tempfile.TemporaryDirectory() as tmp:
            data = V2Data(write_synthetic(os.path.join(tmp, "data"), images=6))
            x, text = data.batch(np.random.default_rng(0), 5)
            self.assertEqual((tuple(x.shape), tuple(text.shape)), ((5, 3, 64, 64), (5, 384)))
            self.assertTrue(bool((x >= -1).all() and (x <= 1).all()))
            norms = text.norm(dim=1)
            self.assertTrue(bool(((norms - 1).abs() < 1e-2).logical_or(norms == 0).all()), norms)

    @unittest.skipIf(torch.cuda.is_available(), "a GPU is here: the CUDA run below is the check")
    def test_device_cuda_without_a_gpu_is_refused_with_the_reason(self):
        with tempfile.TemporaryDirectory() as tmp:
            _, _, args = _tiny_run(tmp)
            with self.assertRaises(SystemExit) as refused:
                train_teacher.main([*args, "--max-steps", "1", "--device", "cuda"])
            self.assertIn("no GPU", str(refused.exception))

    @unittest.skipUnless(torch.cuda.is_available(), "needs a CUDA GPU (the device machine); none here")
    def test_a_cuda_run_saves_what_a_cpu_machine_resumes(self):
        from models.v2.data import V2Data
        with tempfile.TemporaryDirectory() as tmp:
            run, snap, args = _tiny_run(tmp)
            data = os.path.join(tmp, "data")
            on_cpu, on_gpu = V2Data(data), V2Data(data).to("cuda")
            rng_a, rng_b = (np.random.default_rng(5) for _ in range(2))
            for got, want in zip(on_gpu.batch(rng_b, 6), on_cpu.batch(rng_a, 6)):
                self.assertTrue(torch.equal(got.cpu(), want))  # the same rows wherever the data lives
            train_teacher.main([*args, "--max-steps", "3", "--device", "cuda"])
            ck = torch.load(os.path.join(run, "checkpoints", "last.pt"))  # no map_location: all on the CPU
            self.assertEqual(ck["step"], 3)
            self.assertTrue(all(v.device.type == "cpu" for v in ck["model"].values()))
            train_teacher.main([*args, "--max-steps", "4"])  # this machine without its GPU resumes it
            self.assertEqual(torch.load(snap)["step"], 4)
            losses = [r["loss"] for r in _log(run) if "loss" in r]
            self.assertEqual(len(losses), 4)
            self.assertTrue(all(0.0 < v < 10.0 for v in losses), losses)

    def test_sigma_shift_moves_training_to_high_noise_and_shift_1_is_the_plain_mix(self):
        from models.recipe.train_teacher import sample_sigma

        plain = torch.Generator().manual_seed(3)
        s = torch.sigmoid(torch.randn(50_000, generator=plain))
        u, pick = torch.rand(50_000, generator=plain), torch.rand(50_000, generator=plain) < 0.1
        self.assertTrue(torch.equal(sample_sigma(50_000, torch.Generator().manual_seed(3)), torch.where(pick, u, s)))
        shifted = sample_sigma(50_000, torch.Generator().manual_seed(3), shift=3.2)
        self.assertAlmostEqual(float((shifted > 0.8).float().mean()), 0.39, delta=0.02)  # 0.093 unshifted
        self.assertTrue(bool(((shifted > 0) & (shifted < 1)).all()))

    def test_text_whitening_keeps_the_function_and_starts_from_a_snapshot_only(self):
        from models.recipe.nets import EmojiNet, with_whitened_text
        from models.v2.train_teacher import teacher_config

        torch.manual_seed(0)
        net = EmojiNet(teacher_config(8)).eval()
        with torch.no_grad():
            net.null_text.normal_()
        g = torch.Generator().manual_seed(1)
        common = torch.randn(384, generator=g)  # sentence embeddings share a direction, as MiniLM's do
        vectors = torch.nn.functional.normalize(common + 0.3 * torch.randn(500, 384, generator=g), dim=1)
        whitened = with_whitened_text(net, vectors, 1e-3).eval()
        x, sigma = torch.randn(3, 3, 64, 64, generator=g), torch.tensor([0.9, 0.5, 0.1])
        text = torch.cat([vectors[:2], torch.zeros(1, 384)])  # two prompts and the empty one
        with torch.no_grad():
            torch.testing.assert_close(whitened(x, sigma, text), net(x, sigma, text), atol=2e-5, rtol=1e-4)
            z = (vectors - whitened.text_mean) @ whitened.text_whitener.T
        self.assertLess(float((torch.cov(z.T) - torch.diag(torch.cov(z.T).diagonal())).abs().max()), 1e-3)
        with tempfile.TemporaryDirectory() as tmp:
            run, snap, args = _tiny_run(tmp)
            train_teacher.main([*args, "--max-steps", "2"])
            with self.assertRaises(SystemExit):  # last.pt has AdamW moments in the old coordinates
                train_teacher.main([*args, "--max-steps", "3", "--whiten-text", "1e-3"])
            run2 = os.path.join(tmp, "run2")
            train_teacher.main(["--run", run2, *args[2:], "--max-steps", "4", "--resume-snapshot", snap,
                                "--whiten-text", "1e-3", "--snapshot", os.path.join(tmp, "snap2.pt")])
            self.assertTrue(any(r.get("event") == "whiten-text" for r in _log(run2)))
            self.assertTrue(torch.load(os.path.join(tmp, "snap2.pt"), map_location="cpu")["config"]["text_whiten"])

    def _start_two_workers(self, tmp: str) -> tuple[subprocess.Popen, str]:
        run, _, args = _tiny_run(tmp)
        proc = subprocess.Popen([*TRAINER, *args, *TWO_WORKERS], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and not any("loss" in r for r in _log_if_any(run)):
            self.assertIsNone(proc.poll(), "the workers exited before training")
            time.sleep(0.5)
        return proc, run

    def test_sigterm_stops_both_workers_at_one_step_with_a_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc, run = self._start_two_workers(tmp)
            proc.send_signal(signal.SIGTERM)  # to the launcher only, as `kill PID` or the pipeline sends it
            _, err = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, 0, err[-3000:])
            done = [r for r in _log(run) if r.get("event") == "done"]
            self.assertEqual(done[-1]["reason"], "signal")
            ck = torch.load(os.path.join(run, "checkpoints", "last.pt"), map_location="cpu")
            self.assertEqual(ck["step"], done[-1]["step"])

    def test_a_dead_worker_takes_the_run_down_instead_of_leaving_it_waiting(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc, _ = self._start_two_workers(tmp)
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            workers = [int(k) for k in kids if "spawn_main" in _cmdline(int(k))]
            self.assertEqual(len(workers), 2, kids)
            os.kill(workers[1], signal.SIGKILL)
            proc.communicate(timeout=120)
            self.assertNotEqual(proc.returncode, 0)
            for pid in workers:
                self.assertFalse(os.path.exists(f"/proc/{pid}") and "spawn_main" in _cmdline(pid), pid)


def _log_if_any(run: str) -> list[dict]:
    return _log(run) if os.path.exists(os.path.join(run, "train.log.jsonl")) else []


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    unittest.main()
