"""The compact text encoder against the full all-MiniLM-L6-v2 embeddings committed in the fixture
(held-out prompts the compact form never trained on). Needs torch only: runs on the recipe's Python."""

from __future__ import annotations

import json
import os
import unittest

import numpy as np
import torch

from models.v2.text import ENCODER_DIR, encode_compact, load_compact, read_fixture

# measured at training time (models/README.md, v2 text encoder); a lower value means a regression
MIN_MEAN_COSINE = {"free": 0.80, "held_out_captions": 0.85}
BROWSER_BUDGET_BYTES = 8 * 1024 * 1024


class CompactEncoderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.net, cls.tok = load_compact()
        cls.fixture = read_fixture()

    def test_close_to_the_full_encoder_on_held_out_prompts(self):
        for key, (prompts, full) in self.fixture.items():
            cos = (encode_compact(self.net, self.tok, prompts) * full).sum(1)
            self.assertGreaterEqual(float(cos.mean()), MIN_MEAN_COSINE[key], key)

    def test_nearest_prompt_is_mostly_the_same_for_both_forms(self):
        prompts, full = self.fixture["free"]
        compact = encode_compact(self.net, self.tok, prompts)
        # within one set: the most similar other prompt, by each form
        sim_f, sim_c = full @ full.T, compact @ compact.T
        np.fill_diagonal(sim_f, -2)
        np.fill_diagonal(sim_c, -2)
        self.assertGreaterEqual(float((sim_f.argmax(1) == sim_c.argmax(1)).mean()), 0.5)

    def test_empty_and_unknown_prompts(self):
        v = encode_compact(self.net, self.tok, ["", "zzzq xkcdq"])
        self.assertTrue((v[0] == 0).all())  # the network's null prompt
        self.assertAlmostEqual(float(np.linalg.norm(v[1])), 1.0, places=5)

    def test_fits_the_browser_budget_and_uses_the_project_tokenizer(self):
        state = torch.load(os.path.join(ENCODER_DIR, "compact.pt"), map_location="cpu")["state"]
        weight_bytes = sum(t.numel() * 2 for t in state.values())  # fp16 initialisers in the ONNX graph
        tok_bytes = os.path.getsize(os.path.join(ENCODER_DIR, "tokenizer.json"))
        self.assertLessEqual(weight_bytes + tok_bytes, BROWSER_BUDGET_BYTES)
        with open(os.path.join(ENCODER_DIR, "tokenizer.json"), encoding="utf-8") as f:
            spec = json.load(f)
        self.assertEqual((spec["type"], spec["lowercase"], spec["pattern"]), ("word", "ascii", "[a-z0-9]+"))


if __name__ == "__main__":
    unittest.main()
