"""Text-conditioned U-Net for RGB flow matching, with a velocity head (teacher) or a Gaussian-mixture
policy head (pi-Flow student).

The net works at reduced resolution after a patch x patch space-to-depth stem (PixelUnshuffle): v1 has
32x32x3 -> 16x16x12 (patch 2), v2 64x64x3 -> 16x16x48 (patch 4). On 2 CPU cores this costs about what a
16 px model costs while the output keeps every pixel (measured in models/README.md). Text conditioning
(`text_input`) is either a bag of learned word embeddings (v1: masked mean of word ids) or a given
sentence embedding (v2: all-MiniLM-L6-v2 or its compact form, models/v2/text.py); a learned "null"
vector stands for the empty prompt used by classifier-free guidance. It is added to the sigma
embedding, which drives scale/shift of every GroupNorm (AdaGN).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class NetConfig:
    vocab_size: int
    max_length: int = 16
    channels: int = 64
    mults: tuple = (1, 2, 2)
    attn_levels: tuple = (1, 2)  # levels (0 = after the stem) that get self-attention
    blocks: int = 1
    text_dim: int = 64
    emb_mult: int = 2
    image_size: int = 32
    image_channels: int = 3
    head: str = "u"  # "u" (teacher) or "gm" (student)
    k: int = 8  # GM components (student only)
    patch: int = 2  # space-to-depth factor of the stem (the trunk works at image_size / patch)
    text_input: str = "tokens"  # "tokens": word ids, bag of learned embeddings; "vector": a text embedding
    text_whiten: bool = False  # "vector" only: a fixed affine whitening before txt_mlp (with_whitened_text)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mults"], d["attn_levels"] = list(self.mults), list(self.attn_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        d = dict(d)
        d["mults"], d["attn_levels"] = tuple(d["mults"]), tuple(d["attn_levels"])
        return cls(**d)


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c, affine=False)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1, self.c1 = _gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.mod1 = nn.Linear(emb, 2 * cin)
        self.n2, self.c2 = _gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.mod2 = nn.Linear(emb, 2 * cout)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    @staticmethod
    def _adagn(norm, mod, h, e):
        scale, shift = mod(e)[:, :, None, None].chunk(2, dim=1)
        return norm(h) * (1 + scale) + shift

    def forward(self, x, e):
        h = self.c1(F.silu(self._adagn(self.n1, self.mod1, x, e)))
        h = self.c2(F.silu(self._adagn(self.n2, self.mod2, h, e)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, c: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm = nn.GroupNorm(min(8, c), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * c // self.heads, h * w).chunk(3, 1)
        a = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c // self.heads), dim=-1)
        o = torch.bmm(v, a.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(o)


def sigma_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of 1000*sigma (diffusers-style timesteps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
    args = (1000.0 * sigma.float())[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class EmojiNet(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        ch, emb = cfg.channels, cfg.channels * cfg.emb_mult
        self.t_mlp = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        # "vector": a precomputed (B, text_dim) sentence embedding; an all-zero row is the empty prompt
        self.tok = nn.Embedding(cfg.vocab_size, cfg.text_dim) if cfg.text_input == "tokens" else None
        self.null_text = nn.Parameter(torch.zeros(cfg.text_dim))
        if cfg.text_whiten:
            if cfg.text_input != "vector":
                raise ValueError("text_whiten needs text_input='vector'")
            # set by with_whitened_text from the training captions' embeddings; identity until then
            self.register_buffer("text_mean", torch.zeros(cfg.text_dim))
            self.register_buffer("text_whitener", torch.eye(cfg.text_dim))
        self.txt_mlp = nn.Sequential(nn.Linear(cfg.text_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        p2 = cfg.patch * cfg.patch
        self.stem = nn.Conv2d(cfg.image_channels * p2, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, c = [ch], ch
        for level, m in enumerate(cfg.mults):
            for _ in range(cfg.blocks):
                blk = nn.ModuleList([ResBlock(c, ch * m, emb)])
                c = ch * m
                if level in cfg.attn_levels:
                    blk.append(Attention(c))
                self.down.append(blk)
                skips.append(c)
            if level < len(cfg.mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb), Attention(c), ResBlock(c, c, emb)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(cfg.mults))):
            for _ in range(cfg.blocks + 1):
                blk = nn.ModuleList([ResBlock(c + skips.pop(), ch * m, emb)])
                c = ch * m
                if level in cfg.attn_levels:
                    blk.append(Attention(c))
                self.up.append(blk)
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]))
        self.out_norm = _gn(c)
        cimg = cfg.image_channels
        if cfg.head == "u":
            self.out = nn.Conv2d(c, cimg * p2, 3, padding=1)
        else:
            self.out = nn.Conv2d(c, cfg.k * (cimg + 1) * p2, 3, padding=1)
            self.logstd = nn.Linear(emb, 1)

    def embed(self, sigma, tokens):
        if self.tok is None:
            empty = (tokens.abs().sum(1, keepdim=True) == 0).float()
            pooled = tokens
            if self.cfg.text_whiten:  # the empty prompt stays all zeros, so it still reads null_text alone
                pooled = ((tokens - self.text_mean) @ self.text_whitener.T) * (1 - empty)
        else:
            mask = (tokens != 0).float()
            count = mask.sum(1, keepdim=True)
            pooled = (self.tok(tokens) * mask[:, :, None]).sum(1) / count.clamp(min=1.0)
            empty = (count == 0).float()
        pooled = pooled + empty * self.null_text[None, :]
        return F.silu(self.t_mlp(sigma_embedding(sigma, self.cfg.channels)) + self.txt_mlp(pooled))

    def trunk(self, x, sigma, tokens):
        e = self.embed(sigma, tokens)
        h = self.stem(F.pixel_unshuffle(x, self.cfg.patch))
        hs = [h]
        for blk in self.down:
            if isinstance(blk[0], ResBlock):
                h = blk[0](h, e)
                for extra in blk[1:]:
                    h = extra(h)
            else:
                h = blk[0](h)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, e)), e)
        for blk in self.up:
            if isinstance(blk[0], ResBlock):
                h = blk[0](torch.cat([h, hs.pop()], 1), e)
                for extra in blk[1:]:
                    h = extra(h)
            else:
                h = blk[1](blk[0](h))
        return self.out(F.silu(self.out_norm(h))), e

    def forward(self, x, sigma, tokens):
        raw, e = self.trunk(x, sigma, tokens)
        if self.cfg.head == "u":
            return F.pixel_shuffle(raw, self.cfg.patch)
        b, cimg, k = x.shape[0], self.cfg.image_channels, self.cfg.k
        h, w = self.cfg.image_size, self.cfg.image_size
        full = F.pixel_shuffle(raw, self.cfg.patch)  # (B, K*(C+1), H, W)
        means_u = full[:, : k * cimg].reshape(b, k, cimg, h, w)
        logweights = torch.log_softmax(full[:, k * cimg :].reshape(b, k, 1, h, w), dim=1)
        logstds = self.logstd(e).reshape(b, 1, 1, 1, 1)
        return means_u, logweights, logstds


def with_whitened_text(net: EmojiNet, vectors: torch.Tensor, eps: float) -> EmojiNet:
    """The same function with its text input whitened: z = W (v - mu), W = diag(1/sqrt(lambda + eps)) U^T
    from the covariance of `vectors` (N, D) (the training captions' sentence embeddings), and txt_mlp's
    first layer and null_text re-expressed so that every output is unchanged (A' = A W^-1, b' = b + A mu,
    null' = W (null - mu)). Why: gradient steps learn an input direction at a rate that grows with its
    variance, and the sentence embeddings' variance is spread over ~150 directions with a 150:1 range,
    so the fine distinctions between 1,911 emoji names (the weak directions) are learnt last; eps keeps
    directions with almost no variance from being amplified beyond 1/sqrt(eps)."""
    if net.cfg.text_input != "vector" or net.cfg.text_whiten:
        raise ValueError("with_whitened_text takes a net with un-whitened vector text input")
    cfg = NetConfig.from_dict({**net.cfg.to_dict(), "text_whiten": True})
    out = EmojiNet(cfg)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    v = vectors.double()
    mu = v.mean(0)
    lam, u = torch.linalg.eigh(torch.cov((v - mu).T))
    scale = (lam.clamp(min=0) + eps).sqrt()
    w, w_inv = (u / scale).T, u * scale  # W = diag(1/scale) U^T, W^-1 = U diag(scale)
    a, b = state["txt_mlp.0.weight"].double(), state["txt_mlp.0.bias"].double()
    state["txt_mlp.0.weight"] = (a @ w_inv).float()
    state["txt_mlp.0.bias"] = (b + a @ mu).float()
    state["null_text"] = (w @ (state["null_text"].double() - mu)).float()
    state["text_mean"], state["text_whitener"] = mu.float(), w.float()
    out.load_state_dict(state)
    return out


def student_from_teacher(teacher: EmojiNet, k: int, seed: int = 0) -> EmojiNet:
    """GM student initialised from the teacher: every component mean starts as the teacher's velocity
    (plus a small perturbation so the components can separate), uniform weights, small std."""
    cfg = NetConfig.from_dict({**teacher.cfg.to_dict(), "head": "gm", "k": k})
    student = EmojiNet(cfg)
    own = student.state_dict()
    for name, value in teacher.state_dict().items():
        if not name.startswith("out."):
            own[name] = value.clone()
    g = torch.Generator().manual_seed(seed)
    cimg = cfg.image_channels
    tw, tb = teacher.out.weight.detach(), teacher.out.bias.detach()  # (C*4, c, 3, 3)
    w = own["out.weight"].clone()
    b = own["out.bias"].clone()
    nmeans = k * cimg * cfg.patch * cfg.patch
    w[:nmeans] = tw.repeat(k, 1, 1, 1) + 0.02 * tw.std() * torch.randn(w[:nmeans].shape, generator=g)
    b[:nmeans] = tb.repeat(k) + 0.05 * torch.randn(nmeans, generator=g)
    w[nmeans:] = 0.0
    b[nmeans:] = 0.0
    own["out.weight"], own["out.bias"] = w, b
    own["logstd.weight"] = torch.zeros_like(own["logstd.weight"])
    own["logstd.bias"] = torch.full_like(own["logstd.bias"], -1.5)
    student.load_state_dict(own)
    return student


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
