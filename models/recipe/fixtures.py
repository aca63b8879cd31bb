"""Writes models/fixtures/tokenizer-prompts.json: prompts and the Python tokenizer's ids, the reference
the TypeScript tokenizer test compares against.

  /usr/bin/python3 -m models.recipe.fixtures [--tokenizer path] [--out path]
  /usr/bin/python3 -m models.recipe.fixtures --encode '["a","b"]'   (prints ids; used by the live test)
"""

from __future__ import annotations

import argparse
import json
import os

from .common import MODEL_DIR, ROOT
from .tokenizer import Tokenizer

PROMPTS = [
    "grinning face",
    "Red HEART",
    "  red   heart  ",
    "flag: United Kingdom",
    "thumbs up: medium-dark skin tone",
    "\U0001F44D thumbs up",
    "",
    "caf\u00e9 au lait",
    "\u0130stanbul stra\u00dfe",
    "keycap 1 100 2nd",
    "a_b-c.d/e",
    "zzzunknownword cat",
    "smiling face with smiling eyes and three hearts and a party hat on a sunny beach with palm trees at noon",
    "CAT\tface\nwith\r\ntears of JOY",
    "\u01c5 \u212a kelvin",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tokenizer.json"))
    p.add_argument("--out", default=os.path.join(ROOT, "models", "fixtures", "tokenizer-prompts.json"))
    p.add_argument("--encode", default=None, help="JSON list of prompts: print their ids and exit")
    a = p.parse_args()
    tok = Tokenizer.load(a.tokenizer)
    if a.encode is not None:
        print(json.dumps([tok.encode(t) for t in json.loads(a.encode)]))
        return
    cases = [{"prompt": t, "ids": tok.encode(t)} for t in PROMPTS]
    with open(a.out, "w", encoding="utf-8") as f:
        rows = ",\n".join("    " + json.dumps(c) for c in cases)
        f.write('{\n  "tokenizer": "models/piflow-emoji/tokenizer.json",\n  "cases": [\n' + rows + "\n  ]\n}\n")


if __name__ == "__main__":
    main()
