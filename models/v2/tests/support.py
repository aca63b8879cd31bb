"""What the v2 recipe tests share: a tiny real data set (4 emoji x 3 styles) with real MiniLM caption
embeddings, the input of every trainer and exporter test."""

from __future__ import annotations

import os

from models.v2 import prepare, text


def tiny_v2_data(root: str) -> str:
    """Writes the tiny data set under root/data and returns that directory."""
    data = os.path.join(root, "data")
    prepare.prepare(data, size=64, limit=4)
    text.embed_dataset(data)
    return data
