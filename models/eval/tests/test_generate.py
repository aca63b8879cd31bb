"""The evaluation's image sources and its whole run on the shipped model (needs onnxruntime: the
torch-py environment of scripts/setup.sh --models)."""

from __future__ import annotations

import json
import os
import tempfile
import unittest

import numpy as np

from models.eval import independent
from models.eval.generate import OnnxModel, to_uint8
from models.recipe.common import MODEL_DIR, ROOT

FIXTURE = os.path.join(ROOT, "models", "fixtures", "sampling-parity.json")


class OnnxModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = OnnxModel(MODEL_DIR)

    def test_student_reproduces_the_committed_product_sample(self):
        # the same fixture the TypeScript path (onnxruntime-node + @piflow/policy) is held to
        with open(FIXTURE, encoding="utf-8") as f:
            fx = json.load(f)
        x = self.model.student([fx["prompt"]] * len(fx["seeds"]), fx["seeds"], fx["nfe"], latents=True)
        self.assertEqual(list(x.shape), fx["x"]["shape"])
        flat = x.reshape(-1)[:: fx["x"]["stride"]]
        np.testing.assert_allclose(flat, fx["x"]["samples"], atol=fx["tolerance"]["atol"])

    def test_quantisation_rounds_half_to_even_and_clamps(self):
        x = np.array([-1.5, -1.0, 1.0 / 255.0 - 1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 6).repeat(3, axis=1)
        self.assertEqual(to_uint8(x)[0, 0, :, 0].tolist(), [0, 0, 0, 128, 255, 255])

    def test_teacher_steps_change_the_image_and_seeds_are_per_image(self):
        t4 = self.model.teacher(["red heart", "red heart"], [3, 4], 4)
        t8 = self.model.teacher(["red heart"], [3], 8)
        self.assertEqual(t4.shape, (2, 32, 32, 3))
        self.assertFalse(np.array_equal(t4[0], t4[1]))
        self.assertFalse(np.array_equal(t4[0], t8[0]))


class IndependentRunTest(unittest.TestCase):
    def test_small_run_writes_the_table_and_sane_metrics(self):
        with tempfile.TemporaryDirectory() as out:
            res = independent.main(["--limit", "8", "--diversity-prompts", "2", "--free-prompts", "1",
                                    "--out", out])
            self.assertTrue(os.path.exists(os.path.join(out, "table.md")))
            for name in ("free-teacher-50.png", "free-student-4-NFE.png", "specific-teacher-4.png"):
                self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        self.assertEqual(list(res["results"]), ["teacher-50", "teacher-4", "student 4-NFE"])
        for r in res["results"].values():
            for key in ("rank", "control"):
                self.assertTrue(0.0 <= r[key]["top10"] <= 1.0)
                self.assertTrue(1 <= r[key]["median"] <= 1911)
            for space in ("pooled", "pca", "cnn"):
                self.assertTrue(all(np.isfinite(v) for v in r[space].values()))
                self.assertGreater(r[space]["diversity"], 0.0)


if __name__ == "__main__":
    unittest.main()
