"""pi-Flow math in PyTorch, exactly as fixtures/golden/README.md specifies (checked against the
golden vectors by models/recipe/tests/test_golden.py in float64).

Conventions: x_s = (1 - s) x0 + s eps, u = eps - x0; raw time tau with sigma = warp(tau, shift).
Per-sample tensors: sigma/raw (B,), latents (B,C,H,W), GM means (B,K,C,H,W), logweights (B,K,1,H,W),
logstds (B,1,1,1,1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def warp(tau, shift: float):
    return shift * tau / (1 + (shift - 1) * tau)


def unwarp(sigma, shift: float):
    return sigma / (shift + (1 - shift) * sigma)


def _b(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B,1,...,1) with ndim dims."""
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


def _channel_dot(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_c m[b,k,c,p] v[b,c,p] -> (B,K,P): one read of m, no (B,K,C,P) temporary."""
    out = m[:, :, 0] * v[:, None, 0]
    for c in range(1, m.shape[2]):
        out.addcmul_(m[:, :, c], v[:, None, c])
    return out


def _component_sum(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_k w[b,k,p] m[b,k,c,p] -> (B,C,P): one read of m, no (B,K,C,P) temporary."""
    out = m[:, 0] * w[:, 0, None]
    for k in range(1, m.shape[1]):
        out.addcmul_(m[:, k], w[:, k, None])
    return out


class _MixtureMean(torch.autograd.Function):
    """sum_k w_k m_k with w = softmax_k(base + inv_d <m_k, nu>_c): the GM posterior's two passes over the
    means (B,K,C,P), with a hand-written backward that reads them twice more and writes their gradient
    once, where autograd's generic graph makes several full-size temporaries per call (profiled:
    full-size products and their backward were the largest share of a pi-ID segment).
    Shapes: m (B,K,C,P), nu (B,C,P), base (B,K,P), inv_d (B,1,1)."""

    @staticmethod
    def forward(ctx, m, nu, base, inv_d):
        dot = _channel_dot(m, nu)
        w = torch.softmax(torch.addcmul(base, dot, inv_d), dim=1)
        ctx.save_for_backward(m, nu, inv_d, dot, w)
        return _component_sum(m, w)

    @staticmethod
    def backward(ctx, grad):
        m, nu, inv_d, dot, w = ctx.saved_tensors
        grad_w = _channel_dot(m, grad)
        grad_logits = w * (grad_w - (w * grad_w).sum(dim=1, keepdim=True))  # softmax's backward
        grad_dot = grad_logits * inv_d
        grad_m = grad_nu = grad_inv_d = None
        if ctx.needs_input_grad[0]:
            grad_m = w[:, :, None] * grad[:, None]
            grad_m.addcmul_(grad_dot[:, :, None], nu[:, None])
        if ctx.needs_input_grad[1]:
            grad_nu = _component_sum(m, grad_dot)
        if ctx.needs_input_grad[3]:
            grad_inv_d = (grad_logits * dot).sum(dim=(1, 2)).reshape(inv_d.shape)
        return grad_m, grad_nu, grad_logits if ctx.needs_input_grad[2] else None, grad_inv_d


@dataclass
class GMPosterior:
    """What the GM posterior mean needs that does not depend on (x_t, sigma_t), computed once per policy
    (a rollout calls it up to total_substeps times): flat means (B,K,C,P), their squared norms over C and
    the logweights (B,K,P), the source's part of nu (B,C,H,W), and per-sample (B,) factors."""

    means: torch.Tensor
    msq: torch.Tensor
    logweights: torch.Tensor
    nu_src: torch.Tensor
    r_s2: torch.Tensor
    var: torch.Tensor
    eps: float

    def take(self, rows: torch.Tensor) -> "GMPosterior":
        """The same posterior for a subset of the batch (rows: int64 indices); rollout's compaction."""
        return GMPosterior(self.means[rows], self.msq[rows], self.logweights[rows], self.nu_src[rows],
                           self.r_s2[rows], self.var[rows], self.eps)

    def x0(self, x_t, sigma_t):
        """Posterior mean of x0 given (x_t, sigma_t). Algebraically the golden formula, rearranged to
        read the (B,K,C,H,W) means twice per call instead of ~a dozen times: D and var are per sample, so
        sum_k w_k (m_k + var nu)/D = (sum_k w_k m_k)/D + var nu/D, and sum_c m (nu - zeta m/2) splits
        into a dot product and a cached squared norm. The two passes over the means (and their backward)
        are one fused autograd function, _MixtureMean; per-sample factors are (B,) scalars."""
        b, k, c, p = self.means.shape
        st = sigma_t.clamp(min=self.eps)
        r_t = (1 - st) / st
        zeta = r_t * r_t - self.r_s2
        nu = torch.addcmul(-self.nu_src, x_t, _b(r_t / st, 4))  # r_t x_t / st - r_s x_src / ss
        inv_d = 1 / (1 + self.var * zeta).clamp(min=self.eps)
        # logits = logweights + (dot - zeta msq / 2) / d; the dot's part is added inside _MixtureMean
        base = torch.addcmul(self.logweights, self.msq, (-0.5 * zeta * inv_d).reshape(b, 1, 1))
        mixed = _MixtureMean.apply(self.means, nu.reshape(b, c, p), base, inv_d.reshape(b, 1, 1))
        return torch.addcmul(mixed.reshape(nu.shape) * _b(inv_d, 4), nu, _b(self.var * inv_d, 4))

    def velocity(self, x_t, sigma_t):
        return (x_t - self.x0(x_t, sigma_t)) / _b(sigma_t, 4).clamp(min=self.eps)


class GMPolicy:
    """Gaussian-mixture policy built from network outputs (u-space) at (x_src, sigma_src)."""

    def __init__(self, means_u, logweights, logstds, x_src, sigma_src, eps: float = 1e-4):
        s = _b(sigma_src, 5)
        self.x_src, self.sigma_src, self.eps = x_src, sigma_src, eps
        self.means_x0 = x_src[:, None] - s * means_u
        self.var_x0 = torch.exp(2 * logstds) * s * s  # (B,1,1,1,1)
        self.logweights = logweights
        self._posterior = None

    def detached(self) -> "GMPolicy":
        p = GMPolicy.__new__(GMPolicy)
        p.x_src, p.sigma_src, p.eps = self.x_src, self.sigma_src, self.eps
        p.means_x0, p.var_x0, p.logweights = (
            self.means_x0.detach(),
            self.var_x0.detach(),
            self.logweights.detach(),
        )
        p._posterior = None
        return p

    def dropout_(self, mask: torch.Tensor) -> torch.Tensor:
        """mask (B,K) bool, True = drop; rows that would drop every component are left intact."""
        eff = mask & ~mask.all(dim=1, keepdim=True)
        self.logweights = self.logweights.masked_fill(eff[:, :, None, None, None], float("-inf"))
        self._posterior = None
        return eff

    def temperature_(self, temperature: float) -> None:
        if temperature < 1.0:
            self.logweights = torch.log_softmax(self.logweights / max(temperature, self.eps), dim=1)
            self.var_x0 = self.var_x0 * temperature
            self._posterior = None

    def posterior(self) -> GMPosterior:
        """The fixed terms of x0 (cached until dropout_ / temperature_ change the policy)."""
        if self._posterior is None:
            b, k, c, h, w = self.means_x0.shape
            ss = _b(self.sigma_src, 4).clamp(min=self.eps)
            r_s = (1 - ss) / ss
            means = self.means_x0.reshape(b, k, c, h * w)
            self._posterior = GMPosterior(
                means=means,
                msq=(means * means).sum(dim=2),
                logweights=self.logweights.expand(b, k, 1, h, w).reshape(b, k, h * w),
                nu_src=r_s * self.x_src / ss,
                r_s2=(r_s * r_s).reshape(b),
                var=self.var_x0.reshape(b),
                eps=self.eps,
            )
        return self._posterior

    def x0(self, x_t, sigma_t):
        return self.posterior().x0(x_t, sigma_t)

    def velocity(self, x_t, sigma_t):
        return self.posterior().velocity(x_t, sigma_t)


def rollout(policy, x, sigma, raw_src, raw_dst, shift: float, total_substeps: int):
    """Integrate the policy from raw_src to raw_dst (both (B,)) with per-sample substep counts.
    Returns (x_end, sigma_end, raw_end, num_substeps).

    Samples take different numbers of substeps (typically 35-50 % of B x max are needed); when some
    finish, the rest continue as a smaller batch, so no substep is computed for a sample
    that has finished (GMPosterior.take). Each sample's arithmetic is the same as in a full-batch loop."""
    delta = raw_src - raw_dst
    n = torch.round(delta * total_substeps).long().clamp(min=1)
    h = delta / n
    rows = torch.arange(n.shape[0], device=n.device)
    # a zero-length span (piid_segment's student intervals at teacher ratio 1) counts as one substep that
    # moves nothing (x + u * 0 for a finite u); only its sigma = warp(raw) is kept, the velocity is skipped
    left = torch.where(delta != 0, n, 0)
    raw = torch.where(left > 0, raw_src, raw_src.clamp(min=0))
    sigma = torch.where(left > 0, sigma, warp(raw, shift))
    done = []  # (rows, x, sigma, raw) of samples that finished
    post = policy.posterior()
    for i in range(int(left.max().item())):
        finished = left <= i
        if bool(finished.any()):
            keep = (~finished).nonzero().squeeze(1)
            done.append(tuple(t[finished] for t in (rows, x, sigma, raw)))
            rows, x, sigma, raw, left, h = (t[keep] for t in (rows, x, sigma, raw, left, h))
            post = post.take(keep)
        u = post.velocity(x, sigma)
        raw = (raw - h).clamp(min=0)
        sigma_next = warp(raw, shift)
        x = x + u * _b(sigma_next - sigma, 4)
        sigma = sigma_next
    if not done:
        return x, sigma, raw, n
    done.append((rows, x, sigma, raw))
    order = torch.cat([d[0] for d in done]).argsort()
    x, sigma, raw = (torch.cat([d[j] for d in done])[order] for j in (1, 2, 3))
    return x, sigma, raw, n


def average_velocity(policy, x_a, sigma_a, raw_a, raw_end, shift, total_substeps, eps):
    """Mean policy velocity over [raw_end, raw_a]; the local velocity when the span is < 2 substeps."""
    local_only = torch.round((raw_a - raw_end) * total_substeps) < 2
    pred = None
    if not bool(local_only.all()):
        x_end, sigma_end, _, _ = rollout(policy, x_a, sigma_a, raw_a, raw_end, shift, total_substeps)
        pred = (x_a - x_end) / _b(sigma_a - sigma_end, 4).clamp(min=eps)
    if bool(local_only.any()):
        local = policy.velocity(x_a, sigma_a)
        pred = local if pred is None else torch.where(_b(local_only, 4), local, pred)
    return pred, local_only


def train_sample_t(draws, nfe: int, fs: float, shift: float, eps: float):
    """pi-ID segment selection from uniform raw-time draws (B,)."""
    fs = max(fs, eps)
    base = 1.0 / (nfe - 1 + fs)
    tau = draws.clamp(min=eps)
    index = torch.ceil(tau / base + 1 - fs).clamp(min=1, max=nfe)
    raw_src = ((index - (1 - fs)) * base).clamp(min=eps, max=1)
    sigma_src = warp(raw_src, shift)
    size = torch.where(index == 1, torch.full_like(raw_src, fs * base), torch.full_like(raw_src, base))
    return index.long(), raw_src, sigma_src, size


@dataclass
class PiidConfig:
    nfe: int = 4
    final_step_size_scale: float = 0.5
    shift: float = 3.2
    num_intermediate_states: int = 4
    window_substeps: int = 3
    total_substeps: int = 128
    eps: float = 1e-4
    loss_scale: float = 30.0
    gm_dropout: float = 0.1


def piid_segment(
    teacher_u: Callable,  # (x, sigma (B,)) -> u, evaluated without grad (teacher with CFG)
    policy: GMPolicy,
    x_src,
    raw_src,
    sigma_src,
    segment_size,
    teacher_ratio: float,
    cfg: PiidConfig,
    student_draws,  # (B, M) uniform
    teacher_draws,  # (B, M-1) uniform
    dropout_mask=None,  # (B, K) bool or None
    get_x_t_dst: bool = False,
) -> dict:
    """One pi-ID training segment (fixtures/golden/README.md §3 'piid_segment'). Returns the loss and bookkeeping."""
    ts, m = cfg.total_substeps, cfg.num_intermediate_states
    n_l = torch.round(segment_size * ts).clamp(min=1)
    window = torch.minimum(cfg.window_substeps * segment_size / n_l, segment_size)
    span = (segment_size - window)[:, None]
    s_int = torch.sort(student_draws * ((1 - teacher_ratio) * span), dim=-1)[0]
    s_int = torch.diff(s_int, dim=-1, prepend=torch.zeros_like(s_int[:, :1]))
    t_sorted = torch.sort(teacher_draws, dim=-1)[0]
    t_int = torch.diff(
        t_sorted, dim=-1, prepend=torch.zeros_like(s_int[:, :1]), append=torch.ones_like(s_int[:, :1])
    ) * (teacher_ratio * span)

    detached = policy.detached()
    eff_mask = detached.dropout_(dropout_mask) if dropout_mask is not None else None

    x, raw, sigma = x_src, raw_src, sigma_src
    rec = {k: [] for k in ("raw_a", "raw_b", "sigma_a", "x_a", "tgt_u", "pred_u", "local_only")}
    for i in range(m):
        raw_a = (raw - s_int[:, i]).clamp(min=0)
        raw_b = (raw_a - t_int[:, i]).clamp(min=0)
        with torch.no_grad():
            x_a, sigma_a, _, _ = rollout(detached, x, sigma, raw, raw_a, cfg.shift, ts)
            tgt_u = teacher_u(x_a, sigma_a)
        pred_u, local_only = average_velocity(
            policy, x_a, sigma_a, raw_a, raw_b - window, cfg.shift, ts, cfg.eps
        )
        sigma_b = warp(raw_b, cfg.shift)
        x = x_a + tgt_u * _b(sigma_b - sigma_a, 4)
        raw, sigma = raw_b, sigma_b
        for k, v in zip(rec, (raw_a, raw_b, sigma_a, x_a, tgt_u, pred_u, local_only)):
            rec[k].append(v)
    out = {k: torch.stack(v) for k, v in rec.items()}
    out["loss"] = cfg.loss_scale * 0.5 * (out["pred_u"] - out["tgt_u"]).pow(2).mean()
    out.update(window_size=window, student_intervals=s_int, teacher_intervals=t_int)
    if eff_mask is not None:
        out["dropout_mask_effective"] = eff_mask
    if get_x_t_dst:
        with torch.no_grad():
            out["x_t_dst"] = rollout(detached, x, sigma, raw, raw_src - segment_size, cfg.shift, ts)[0]
    return out


def schedule(nfe: int, shift: float, fs: float):
    """Few-step schedule (h = 0): per step (raw_src, sigma_src, raw_dst, sigma_dst) as floats."""
    base = 1.0 / (nfe - 1 + fs)
    raw_src = [max(1.0 - k * base, 0.0) for k in range(nfe)]
    sig_src = [warp(r, shift) for r in raw_src]
    sig_dst = sig_src[1:] + [0.0]
    return [(raw_src[k], sig_src[k], unwarp(sig_dst[k], shift), sig_dst[k]) for k in range(nfe)]


def auto_temperature(nfe: int) -> float:
    return min(max(0.1 * (nfe - 1), 0.0), 1.0)


@torch.no_grad()
def sample_gm(student_fn, x, nfe: int, shift: float, fs: float, total_substeps: int, eps: float,
              temperature: float | None = None):
    """Few-step GM sampling (golden 'sampling_loop'); student_fn(x, sigma (B,)) -> (means_u, logweights, logstds).
    temperature None = auto (applied to every step but the last)."""
    temp = auto_temperature(nfe) if temperature is None else temperature
    b = x.shape[0]
    for k, (raw_s, sig_s, raw_d, _) in enumerate(schedule(nfe, shift, fs)):
        sigma = torch.full((b,), sig_s, dtype=x.dtype, device=x.device)
        policy = GMPolicy(*student_fn(x, sigma), x, sigma, eps=eps)
        if k < nfe - 1:
            policy.temperature_(temp)
        x = rollout(policy, x, sigma, torch.full((b,), raw_s, dtype=x.dtype, device=x.device),
                    torch.full((b,), raw_d, dtype=x.dtype, device=x.device), shift, total_substeps)[0]
    return x


@torch.no_grad()
def sample_euler(teacher_u, x, steps: int, shift: float):
    """Plain Euler over uniform raw time (warped by shift) from sigma=1 to 0."""
    b = x.shape[0]
    sig = [warp(1.0 - i / steps, shift) for i in range(steps + 1)]
    for i in range(steps):
        u = teacher_u(x, torch.full((b,), sig[i], dtype=x.dtype, device=x.device))
        x = x + u * (sig[i + 1] - sig[i])
    return x
