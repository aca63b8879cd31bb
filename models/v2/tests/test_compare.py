"""The paired reading of models.v2.compare on known rank lists."""

from __future__ import annotations

import math
import unittest

import numpy as np

from models.v2.compare import paired


class PairedTest(unittest.TestCase):
    def test_identical_snapshots_differ_by_nothing(self):
        ranks = np.array([1, 4, 30, 200, 7])
        out = paired(ranks, ranks.copy())
        self.assertEqual((out["mean_log_rank_ratio"], out["interval"], out["b_better"], out["b_worse"]),
                         (0.0, [0.0, 0.0], 0, 0))
        self.assertEqual(out["top10_gain"], 0.0)

    def test_halved_ranks_read_as_b_better_with_an_interval_below_zero(self):
        rng = np.random.default_rng(1)
        a = rng.integers(2, 1912, size=400)
        b = np.maximum(1, a // 2) * np.where(rng.random(400) < 0.1, 3, 1)  # mostly better, some worse
        out = paired(a, b)
        self.assertLess(out["interval"][1], 0.0)
        self.assertLess(out["interval"][0], out["mean_log_rank_ratio"])
        self.assertGreater(out["b_better"], out["b_worse"])
        self.assertAlmostEqual(out["top10_gain"], float(((b <= 10).astype(float) - (a <= 10)).mean()))
        self.assertLess(out["mean_log_rank_ratio"], -math.log(2) * 0.5)


if __name__ == "__main__":
    unittest.main()
