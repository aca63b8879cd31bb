"""The v2 data set on the first emoji of each style (needs the art packages and cairosvg:
scripts/setup.sh --models)."""

from __future__ import annotations

import json
import os
import tempfile
import unittest

import numpy as np

from models.v2 import prepare
from models.v2.sources import FluentIcons, base_images

STYLE_WORDS = {w for words in prepare.STYLE_WORDS.values() for w in words} - {"noto"}


def _strip_style(caption: str) -> str:
    for w in sorted({w for words in prepare.STYLE_WORDS.values() for w in words}, key=len, reverse=True):
        if caption.startswith(w + " "):
            return caption[len(w) + 1 :]
        if caption.endswith(", " + w):
            return caption[: -len(w) - 2]
    return caption


class PrepareTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        # the first 24 base emoji in sort order: smileys, without skin tones
        cls.info = prepare.prepare(cls.tmp.name, size=64, limit=24)
        with np.load(os.path.join(cls.tmp.name, "images64.npz")) as z:
            cls.images, cls.weights = z["images"], z["weights"]
        with open(os.path.join(cls.tmp.name, "items.json"), encoding="utf-8") as f:
            cls.items = json.load(f)
        with open(os.path.join(cls.tmp.name, "captions.json"), encoding="utf-8") as f:
            cls.captions = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_every_style_contributes_images_of_equal_total_weight(self):
        self.assertEqual(self.info["per_style"], {"noto": 24, "twemoji": 24, "fluent": 24})
        self.assertEqual(self.images.shape, (72, 64, 64, 3))
        styles = np.array([it["style"] for it in self.items])
        for s in prepare.STYLES:
            self.assertAlmostEqual(float(self.weights[styles == s].sum()), 1.0, places=5)

    def test_the_three_styles_draw_the_same_emoji_differently(self):
        noto, twemoji, fluent = (self.images[i * 24] for i in range(3))  # "grinning face" in each
        for a, b in ((noto, twemoji), (noto, fluent), (twemoji, fluent)):
            self.assertGreater(np.abs(a.astype(int) - b.astype(int)).mean(), 5.0)
        for img in (noto, twemoji, fluent):
            self.assertLess(img.mean(), 240.0)  # not blank white
            self.assertTrue((img[0, 0] == 255).all())  # corners are white background

    def test_captions_name_the_emoji_and_carry_the_style_word(self):
        emojibase = prepare._emojibase_index()
        entries = {e.unified: e for e in base_images("noto", 16)[0]}
        for it, caps in zip(self.items, self.captions):
            self.assertEqual(len(caps), prepare.VARIANTS)
            names = prepare.describe(entries[it["unified"]], emojibase, None, it["unified"])["names"]
            self.assertIn(_strip_style(caps[0]), names)  # the first caption is a plain name
            for c in caps:
                self.assertTrue(any(_strip_style(c).startswith(n) for n in names), c)
                self.assertEqual(any(w in c for w in STYLE_WORDS), it["style"] != "noto", c)
        self.assertIn("grinning face", self.captions[0])

    def test_skin_tone_variants_are_named_after_their_tone(self):
        fluent = FluentIcons()
        desc = prepare.describe(self._entry("WAVING HAND SIGN"), prepare._emojibase_index(), "1F3FD", "1F44B-1F3FD")
        self.assertIn("waving hand: medium skin tone", desc["names"])
        self.assertIn("waving hand sign medium skin tone", desc["names"])
        self.assertEqual(fluent.name_of("1F44B-1F3FD"), "waving-hand-medium")
        self.assertEqual(fluent.name_of("2600-FE0F"), "sun")

    def test_fluent_aliases_render_mirrored(self):
        fluent = FluentIcons()
        left = fluent.render("backhand-index-pointing-left", 32)
        right = fluent.render("backhand-index-pointing-right", 32)
        # the same drawing mirrored (antialiasing differs by a few levels)
        np.testing.assert_allclose(left[:, ::-1].astype(int), right.astype(int), atol=4)
        self.assertGreater(np.abs(left.astype(int) - right.astype(int)).mean(), 5.0)

    @staticmethod
    def _entry(name):
        entries, _ = base_images("noto", 16)
        return next(e for e in entries if e.name == name)


if __name__ == "__main__":
    unittest.main()
