"""Data-parallel workers (models/recipe/workers.py) in two real gloo processes: averaged gradients equal
on both ranks and equal to the mean of the local ones, the loss rides along, any() agrees, rank 0's
weights reach rank 1, and the per-rank streams differ from each other (needs torch 2 with distributed)."""

from __future__ import annotations

import os
import tempfile
import unittest

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from models.recipe.workers import Workers, join


def _local_grads(rank: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(3, 4, generator=g), torch.randn(3, generator=g)]


def _worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        w = Workers(rank, 2)
        torch.manual_seed(rank)  # different initial weights on purpose
        net = nn.Linear(4, 3)
        w.same_weights(net)
        for p, g in zip(net.parameters(), _local_grads(rank)):
            p.grad = g.clone()
        mean_loss = w.average_gradients(list(net.parameters()), torch.tensor(1.0 + rank))
        rng, gen = w.split_streams(np.random.default_rng(7), torch.Generator().manual_seed(7))
        torch.save({"grads": [p.grad for p in net.parameters()], "weights": net.state_dict(), "loss": mean_loss,
                    "any_one": w.any(rank == 1), "any_none": w.any(False), "draw": rng.random(4),
                    "noise": torch.rand(4, generator=gen)}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


class WorkersTest(unittest.TestCase):
    def test_two_gloo_workers(self):
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(_worker, args=(os.path.join(tmp, "store"), tmp), nprocs=2, join=True)
            r0, r1 = (torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in (0, 1))
        expected = [(a + b) / 2 for a, b in zip(_local_grads(0), _local_grads(1))]
        for got0, got1, want in zip(r0["grads"], r1["grads"], expected):
            self.assertTrue(torch.equal(got0, got1))
            torch.testing.assert_close(got0, want)
        self.assertEqual((r0["loss"], r1["loss"]), (1.5, 1.5))
        self.assertEqual((r0["any_one"], r1["any_one"], r0["any_none"], r1["any_none"]), (True, True, False, False))
        for k, v in r0["weights"].items():
            self.assertTrue(torch.equal(v, r1["weights"][k]), k)
        self.assertFalse(np.array_equal(r0["draw"], r1["draw"]))
        self.assertFalse(torch.equal(r0["noise"], r1["noise"]))

    def test_one_process_is_left_alone(self):
        os.environ.pop("WORLD_SIZE", None)
        w = join()
        self.assertEqual((w.rank, w.world, w.chief), (0, 1, True))
        rng, gen = np.random.default_rng(3), torch.Generator().manual_seed(3)
        self.assertEqual(w.split_streams(rng, gen), (rng, gen))
        self.assertEqual(w.local_batch(32), 32)
        with self.assertRaises(ValueError):
            Workers(0, 3).local_batch(32)


if __name__ == "__main__":
    unittest.main()
