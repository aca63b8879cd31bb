"""Word-level tokenizer shared with TypeScript (models/js/tokenizer.ts).

The spec is deliberately tiny so both languages agree bit for bit:
1. map ASCII 'A'-'Z' to 'a'-'z' (no Unicode case folding: JS and Python differ there);
2. every character outside [a-z0-9] is a separator;
3. each word maps to its index in `vocab` (index 0 = pad, 1 = unk), unknown words -> unkId;
4. truncate to maxLength, right-pad with padId.
"""

from __future__ import annotations

import json
import re

_WORD = re.compile(r"[a-z0-9]+")
_UPPER = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})

PAD = "<pad>"
UNK = "<unk>"


def words(text: str) -> list[str]:
    """Split text into tokenizer words (ASCII lowercase, [a-z0-9]+ runs)."""
    return _WORD.findall(text.translate(_UPPER))


class Tokenizer:
    """Encodes prompts to fixed-length int id lists."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.vocab: list[str] = spec["vocab"]
        self.max_length: int = spec["maxLength"]
        self.pad_id: int = spec["padId"]
        self.unk_id: int = spec["unkId"]
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def load(cls, path: str) -> "Tokenizer":
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def encode(self, text: str) -> list[int]:
        ids = [self.index.get(w, self.unk_id) for w in words(text)][: self.max_length]
        return ids + [self.pad_id] * (self.max_length - len(ids))


def build_spec(all_words: list[str], max_length: int) -> dict:
    vocab = [PAD, UNK] + sorted(set(all_words))
    return {
        "version": 1,
        "type": "word",
        "lowercase": "ascii",
        "pattern": "[a-z0-9]+",
        "maxLength": max_length,
        "padId": 0,
        "unkId": 1,
        "vocab": vocab,
    }
