"""PyTorch CPU baseline for bench/policy.ts: the GM substep (posterior velocity + Euler), vectorised.

Usage: python3 bench/policy_torch.py '{"B":1,"K":8,"C":16,"H":128,"W":128,"sigmas":[...],"repeats":3}'
Prints one JSON line {"ms_per_substep": ..., "threads": 1, "torch": version}.
means_x0 and var are computed once per segment (outside the timing), as piFlow's GMFlowPolicy does;
each substep then evaluates the same formulas as fixtures/golden/README.md §3 gm_velocity, in float32.
"""
import json
import sys
import time

import torch

torch.set_num_threads(1)
cfg = json.loads(sys.argv[1])
B, K, C, H, W = cfg['B'], cfg['K'], cfg['C'], cfg['H'], cfg['W']
sigmas = cfg['sigmas']
eps = 1e-4
g = torch.Generator().manual_seed(0)
means_u = torch.randn(B, K, C, H, W, generator=g)
logweights = torch.log_softmax(torch.randn(B, K, 1, H, W, generator=g), dim=1)
logstds = torch.full((B, 1, 1, 1, 1), -2.0)
x_src = torch.randn(B, C, H, W, generator=g)
sigma_src = sigmas[0]

# per segment
means_x0 = x_src.unsqueeze(1) - sigma_src * means_u
var = (sigma_src ** 2) * torch.exp(2 * logstds)  # (B,1,1,1,1)


def substep(x, s, s_next):
    st = max(s, eps)
    ss = max(sigma_src, eps)
    r_t = (1 - st) / st
    r_s = (1 - ss) / ss
    zeta = r_t * r_t - r_s * r_s
    nu = (r_t / st) * x - (r_s / ss) * x_src  # (B,C,H,W)
    d = (1 + var * zeta).clamp(min=eps)  # (B,1,1,1,1)
    nu_k = nu.unsqueeze(1)
    post_means = (means_x0 + var * nu_k) / d
    logits = logweights + (means_x0 * (nu_k - 0.5 * zeta * means_x0)).sum(dim=2, keepdim=True) / d
    w = torch.softmax(logits, dim=1)
    x0 = (w * post_means).sum(dim=1)
    u = (x - x0) / st
    return x + u * (s_next - s)


with torch.no_grad():
    x = x_src.clone()
    x = substep(x, sigmas[0], sigmas[1])  # warm-up
    times = []
    for _ in range(cfg.get('repeats', 3)):
        x = x_src.clone()
        t0 = time.process_time()  # CPU time, like bench/policy.ts (shared machines)
        for i in range(len(sigmas) - 1):
            x = substep(x, sigmas[i], sigmas[i + 1])
        times.append((time.process_time() - t0) / (len(sigmas) - 1))
    times.sort()
print(json.dumps({'ms_per_substep': times[len(times) // 2] * 1e3, 'threads': torch.get_num_threads(),
                  'torch': torch.__version__, 'checksum': float(x.abs().sum())}))
