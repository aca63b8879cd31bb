"""Command-line options of the standalone server, their defaults (one place) and device/dtype choice.

Defaults, and why:
- `--max-wait-ms 0`: work-conserving batching, as the Node backend measured for its model: an idle
  GPU never waits for company; under load batches form while the previous one runs.
- `--queue-limit 32` requests per model: with 4-NFE students at ~1 image/s/GPU (FLUX.1 at 1024²) a
  longer queue only means waits the worker's deadline would cut anyway; past it clients retry elsewhere.
- `--queue-timeout-ms 120000`: a request that has not started within 2 minutes ends with `timeout`.
- `--max-body-bytes 65536`: a generate request is a prompt and a few numbers.
- `--prompt-cache 64` prompts per model: a FLUX T5 conditioning is 512 × 4096 bf16 = 4 MiB, so 256 MiB.
- `--preview-size 64`: previews are for progress bars, a few KB each.
"""

from __future__ import annotations

import argparse
import os

import torch

from ..manifest import bundled_ids

DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='python -m piflow_torch.server',
        description='piflow PyTorch backend: serves π-Flow students (backend/PROTOCOL.md). '
                    'The shared secret comes from PIFLOW_BACKEND_SECRET (never from argv); the HF token '
                    'from HF_TOKEN / the Hub login; HF_HUB_OFFLINE=1 uses the local cache only.')
    p.add_argument('--model', action='append', required=True, metavar='MANIFEST_OR_ID',
                   help=f'manifest path or bundled id ({", ".join(bundled_ids())}); repeat to serve several')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=8790, help='0 picks a free port (printed on stdout)')
    p.add_argument('--device', default='auto', help='auto (cuda when available), cpu, cuda, cuda:N')
    p.add_argument('--dtype', choices=['auto', *DTYPES], default='auto',
                   help='weights dtype; auto = bf16 on CUDA, fp32 on CPU (the policy always runs in fp32)')
    p.add_argument('--max-batch-rows', type=int, default=None,
                   help="images per shared forward (default: the manifest's limits.maxBatchSize)")
    p.add_argument('--max-wait-ms', type=float, default=0.0)
    p.add_argument('--queue-limit', type=int, default=32)
    p.add_argument('--queue-timeout-ms', type=float, default=120_000.0)
    p.add_argument('--max-body-bytes', type=int, default=64 * 1024)
    p.add_argument('--prompt-cache', type=int, default=64, help='prompts kept encoded per model')
    p.add_argument('--preview-size', type=int, default=64, help='longest side of progress previews')
    p.add_argument('--debug-step-delay-ms', type=float, default=0.0,
                   help='fault injection for tests: sleep this long after every NFE. Never in production.')
    return p


def check_ranges(args: argparse.Namespace):
    for name in ('queue_limit', 'max_body_bytes', 'preview_size'):
        if getattr(args, name) < 1:
            raise SystemExit(f'--{name.replace("_", "-")} must be >= 1')
    for name in ('max_wait_ms', 'queue_timeout_ms', 'debug_step_delay_ms', 'prompt_cache'):
        if getattr(args, name) < 0:
            raise SystemExit(f'--{name.replace("_", "-")} must be >= 0')
    if args.max_batch_rows is not None and args.max_batch_rows < 1:
        raise SystemExit('--max-batch-rows must be >= 1')


def pick_device(choice: str) -> torch.device:
    if choice == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(choice)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(f'--device {choice}: CUDA is not available here (torch {torch.__version__})')
    return device


def pick_dtype(choice: str, device: torch.device) -> torch.dtype:
    if choice == 'auto':
        return torch.bfloat16 if device.type == 'cuda' else torch.float32
    return DTYPES[choice]


def secret_from_env() -> str:
    secret = os.environ.get('PIFLOW_BACKEND_SECRET', '')
    if not secret:
        raise SystemExit('PIFLOW_BACKEND_SECRET must be set (the secret the edge worker sends)')
    return secret
