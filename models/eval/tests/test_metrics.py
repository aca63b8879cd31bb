"""The independent evaluation's metrics and feature spaces on inputs with known answers (NumPy + torch
only: runs on the recipe's Python)."""

from __future__ import annotations

import unittest

import numpy as np

from models.eval.features import FeatureSpaces, RandomCNN, area_resize, pooled_pixels, to_float
from models.eval.metrics import (
    _sqrtm_trace,
    derangement,
    frechet_distance,
    kid,
    per_prompt_diversity,
    precision_recall,
    rank_summary,
    target_ranks,
)


class FrechetTest(unittest.TestCase):
    def test_trace_sqrt_matches_the_general_eigenvalue_form(self):
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
        ca, cb = a @ a.T, b @ b.T
        direct = np.sqrt(np.linalg.eigvals(ca @ cb).real.clip(0)).sum()
        self.assertAlmostEqual(_sqrtm_trace(ca, cb), direct, places=8)

    def test_gaussians_with_known_distance(self):
        # N(0, I) vs N(m, 4I) in d dims: |m|^2 + d (1 + 4 - 2*2) = |m|^2 + d
        rng = np.random.default_rng(1)
        d, m = 4, np.array([1.0, -2.0, 0.5, 0.0])
        x = rng.standard_normal((40000, d))
        y = m + 2.0 * rng.standard_normal((40000, d))
        self.assertAlmostEqual(frechet_distance(x, y), float(m @ m) + d, delta=0.15)
        self.assertAlmostEqual(frechet_distance(x, x), 0.0, places=6)


class KidTest(unittest.TestCase):
    def test_same_distribution_is_near_zero_and_a_shift_is_not(self):
        rng = np.random.default_rng(2)
        x, y = rng.standard_normal((800, 8)), rng.standard_normal((800, 8))
        same = kid(x, y, subsets=20, subset_size=400)
        shifted = kid(x, y + 0.5, subsets=20, subset_size=400)
        self.assertLess(abs(same), 0.01)
        self.assertGreater(shifted, 10 * max(abs(same), 1e-3))

    def test_too_few_samples_is_an_error(self):
        with self.assertRaises(ValueError):
            kid(np.zeros((1, 3)), np.zeros((5, 3)))


class PrecisionRecallTest(unittest.TestCase):
    def test_identical_disjoint_and_mode_dropping_sets(self):
        rng = np.random.default_rng(3)
        real = np.concatenate([rng.standard_normal((300, 2)) + [-6, 0], rng.standard_normal((300, 2)) + [6, 0]])
        self.assertEqual(precision_recall(real, real.copy()), (1.0, 1.0))
        self.assertEqual(precision_recall(real, real + 100.0), (0.0, 0.0))
        one_mode = rng.standard_normal((300, 2)) + [-6, 0]  # covers half the real data
        precision, recall = precision_recall(real, one_mode)
        self.assertGreater(precision, 0.9)
        self.assertLess(recall, 0.6)


class DiversityAndRankTest(unittest.TestCase):
    def test_diversity_is_the_mean_pairwise_distance_within_prompts(self):
        f = np.array([[0, 0], [3, 4], [1, 1], [1, 1]], dtype=np.float64)  # prompt 0: distance 5, prompt 1: 0
        self.assertAlmostEqual(per_prompt_diversity(f, prompts=2, seeds=2), 2.5)
        with self.assertRaises(ValueError):
            per_prompt_diversity(f, prompts=4, seeds=1)

    def test_ranks_count_the_references_strictly_closer_than_the_target(self):
        refs = np.array([[0.0], [1.0], [2.0], [3.0]])
        samples = np.array([[0.1], [0.1], [2.9]])
        ranks = target_ranks(samples, refs, np.array([0, 3, 3]))
        self.assertEqual(ranks.tolist(), [1, 4, 1])
        summary = rank_summary(ranks, top=1)
        self.assertAlmostEqual(summary["top1"], 2 / 3)
        self.assertEqual(summary["median"], 1.0)

    def test_derangement_moves_every_index(self):
        for n in (2, 3, 50):
            d = derangement(n, np.random.default_rng(n))
            self.assertEqual(sorted(d.tolist()), list(range(n)))
            self.assertFalse((d == np.arange(n)).any())


class FeatureTest(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(4)
        self.images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)

    def test_pooling_averages_whole_blocks(self):
        img = np.zeros((1, 16, 16, 3), dtype=np.uint8)
        img[0, :8, :8, 0] = 255  # top-left quarter red
        pooled = pooled_pixels(img, size=2).reshape(3, 2, 2)
        self.assertEqual(pooled[0].tolist(), [[1.0, 0.0], [0.0, 0.0]])
        self.assertEqual(area_resize(to_float(img), 32).shape, (1, 3, 32, 32))
        with self.assertRaises(ValueError):
            area_resize(to_float(img), 12)
        with self.assertRaises(ValueError):
            to_float(img.astype(np.float32))

    def test_random_cnn_is_fixed_by_its_seed(self):
        x = to_float(self.images[:4])
        a, b = RandomCNN()(x), RandomCNN()(x)
        self.assertEqual(a.shape, (4, 2 * (128 + 256)))
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.allclose(a, RandomCNN(seed=1)(x)))

    def test_spaces_are_centred_and_scaled_on_the_reference(self):
        spaces = FeatureSpaces(self.images, eval_size=32, components=16)
        feats = spaces(self.images)
        for name in spaces.names:
            np.testing.assert_allclose(feats[name].mean(axis=0), 0.0, atol=1e-8)
            self.assertAlmostEqual(float(feats[name].var(axis=0).mean()), 1.0, places=6)
        self.assertEqual(feats["pca"].shape, (40, 16))


if __name__ == "__main__":
    unittest.main()
