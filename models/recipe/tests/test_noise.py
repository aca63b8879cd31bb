"""models/recipe/noise.py against policy/vectors/noise.json (bit-exact float64 and float32).

Run: /usr/bin/python3 -m unittest models.recipe.tests.test_noise
"""

from __future__ import annotations

import json
import os
import unittest

import numpy as np

from models.recipe import noise

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "policy", "vectors", "noise.json")


def _u32(h: str) -> np.ndarray:
    return np.array([int(h, 16)], dtype=np.uint64)


class TestNoise(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(VECTORS):
            raise unittest.SkipTest(f"{VECTORS} missing")
        with open(VECTORS, encoding="utf-8") as f:
            cls.v = json.load(f)

    def test_philox_known_answers(self):
        for case in self.v["philox4x32_10"]:
            ctr = np.array([[int(h, 16) for h in case["counter"]]], dtype=np.uint64)
            out = noise.philox4x32_10(ctr, tuple(int(h, 16) for h in case["key"]))
            self.assertEqual([f"{int(w):08x}" for w in out[0]], case["output"])

    def test_box_muller_exact(self):
        for case in self.v["box_muller"]:
            a, b = _u32(case["a"]), _u32(case["b"])
            self.assertEqual(noise.ln_uniform(a)[0], case["ln_uniform_a"])
            z0, z1 = noise.box_muller(a, b)
            self.assertEqual([z0[0], z1[0]], case["normals"])

    def test_streams_bit_exact(self):
        for s in self.v["streams"]:
            got = noise.randn(len(s["float64"]), s["seed"], s["offset"])
            self.assertEqual(got.tolist(), s["float64"], f"seed {s['seed']} offset {s['offset']}")
            bits = [f"{int(x):08x}" for x in got.astype(np.float32).view(np.uint32)]
            self.assertEqual(bits, s["float32_bits"])

    def test_slices_agree(self):
        whole = noise.randn(37, 9, 5)
        self.assertEqual(noise.randn(10, 9, 20).tolist(), whole[15:25].tolist())


if __name__ == "__main__":
    unittest.main()
