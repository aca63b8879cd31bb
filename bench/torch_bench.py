"""Benchmark of the PyTorch backend's generation path against plain diffusers on the same weights.

    python bench/torch_bench.py --profile fixture            # CPU, the tiny fixture model (npm run bench -- torch)
    python bench/torch_bench.py --profile full --device cuda # a lent GPU: FLUX.1-shaped random bf16 model, 1024²
    python bench/torch_bench.py --profile small              # the GPU path's logic at toy size, on a CPU

Measures, in one run: the student's forward (ms, batch 1), the policy rollout per NFE (the sampler's time
per NFE minus its forward), images/s of whole generations through `pipeline.generate.run_batch` (prompt
cached, noise, every NFE, VAE decode, PNG) at each batch size, the same for diffusers' `FluxPipeline` on
the base transformer with its own Euler scheduler at 4 and at 50 steps (+ PNG), and peak GPU memory.
Prints a markdown table whose ratios are against the baselines of this same run; `--json` also writes
the numbers. On a CPU the bench runs torch on one thread and reads process CPU time (as bench/policy.ts
does), so other jobs on a shared machine inflate the numbers less; on a GPU it reads wall time after a
synchronise. Read the ratios, not the milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'torch-backend'))

from piflow_torch.manifest import load_manifest  # noqa: E402
from piflow_torch.pipeline.generate import load_model, run_batch  # noqa: E402
from piflow_torch.pipeline.images import png_bytes  # noqa: E402
from piflow_torch.pipeline.spec import GenerationSpec  # noqa: E402

FIXTURE_MANIFEST = REPO / 'torch-backend' / 'fixtures' / 'manifests' / 'piflux-tiny.json'
PROMPT = 'a red apple on a wooden table, studio light'
clock = time.perf_counter  # process CPU time on a CPU device (set in main)


class Member:
    """A batch member that only counts what arrives (run_batch's BatchMember)."""

    def __init__(self, spec: GenerationSpec):
        self.spec = spec
        self.images = 0

    def cancelled(self) -> bool:
        return False

    def on_progress(self, step, nfe, preview_png):
        pass

    def on_image(self, index, seed, png, width, height):
        self.images += 1


def sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class ForwardTimer:
    """Wraps `student.forward` to time each call (synchronised), so rollout time = step − forward."""

    def __init__(self, student, device):
        self.inner = student.forward
        self.device = device
        self.times: list[float] = []
        student.forward = self

    def __call__(self, *args, **kwargs):
        sync(self.device)
        start = clock()
        out = self.inner(*args, **kwargs)
        sync(self.device)
        self.times.append((clock() - start) * 1e3)
        return out


def bench_manifest(base: Path, adapter: Path, out: Path, side: int) -> Path:
    """A manifest for a built model (the released pi-FLUX.1 settings, sizes up to `side`)."""
    raw = json.loads((REPO / 'torch-backend/piflow_torch/manifests/pi-flux1-4nfe.json').read_text())
    raw.update(id='bench-flux', base={'path': str(base)}, adapter={'path': str(adapter)},
               limits={'maxCount': 8, 'maxBatchSize': 8})
    raw['image'] = {'defaultWidth': side, 'defaultHeight': side, 'minSide': 16, 'maxSide': max(side, 2048),
                    'multipleOf': 16, 'maxPixels': max(side * side, 2048 * 2048)}
    path = out / 'bench-flux.json'
    path.write_text(json.dumps(raw))
    return path


def median(values):
    return statistics.median(values) if values else float('nan')


def pi_flow(runtime, side: int, nfe: int, batches: list[int], repeats: int, device) -> dict:
    timer = ForwardTimer(runtime.student, device)
    results = {}
    for rows in [1] + batches:  # the first batch-1 pass warms up (and caches the prompt)
        walls, forwards, steps = [], [], []
        for _ in range(repeats):
            members = [Member(GenerationSpec(prompt=PROMPT, seed=i, count=1, width=side, height=side, nfe=nfe,
                                             guidance=runtime.manifest.guidance.default, preview=False))
                       for i in range(rows)]
            timer.times.clear()
            sync(device)
            start = clock()
            timings = run_batch(runtime, members, lambda: False)
            sync(device)
            walls.append(clock() - start)
            forwards += timer.times
            steps += timings.step_ms
            assert sum(m.images for m in members) == rows
        results[rows] = {'images_per_s': rows / median(walls), 'forward_ms': median(forwards),
                         'step_ms': median(steps), 'rollout_ms': median(steps) - median(forwards)}
    runtime.student.forward = timer.inner
    return results


def diffusers_baseline(base: Path, dtype, device, side: int, steps_list: list[int], batches: list[int],
                       repeats: int, guidance: float) -> dict:
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(base), torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    results = {}
    for steps in steps_list:
        for rows in [1] + batches:
            walls = []
            for _ in range(repeats if steps <= 8 else 1):
                generator = torch.Generator().manual_seed(0)
                sync(device)
                start = clock()
                images = pipe([PROMPT] * rows, height=side, width=side, num_inference_steps=steps,
                              guidance_scale=guidance, generator=generator, max_sequence_length=512).images
                for image in images:
                    png_bytes(__import__('numpy').asarray(image))
                sync(device)
                walls.append(clock() - start)
            results[(steps, rows)] = rows / median(walls)
    del pipe
    return results


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == 'cuda' else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--profile', choices=['fixture', 'small', 'full'], default='fixture')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', choices=['fp32', 'bf16'], default=None)
    parser.add_argument('--size', type=int, default=None, help='image side (default: 128 fixture/small, 1024 full)')
    parser.add_argument('--batches', default='1,4,8')
    parser.add_argument('--baseline-steps', default='4,50')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--json', type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    global clock
    if device.type == 'cpu':
        torch.set_num_threads(1)
        clock = time.process_time
    dtype = {'fp32': torch.float32, 'bf16': torch.bfloat16}[args.dtype or ('bf16' if device.type == 'cuda' else 'fp32')]
    side = args.size or (1024 if args.profile == 'full' else 128)
    batches = [int(b) for b in args.batches.split(',')]
    baseline_steps = [int(s) for s in args.baseline_steps.split(',')]
    torch.set_grad_enabled(False)

    with tempfile.TemporaryDirectory(prefix='piflow-bench-') as tmp:
        started = clock()
        if args.profile == 'fixture':
            manifest_path = FIXTURE_MANIFEST
        else:
            import torch_models

            base, adapter = torch_models.build(Path(tmp), args.profile, device)
            manifest_path = bench_manifest(base, adapter, Path(tmp), side)
        loaded = load_manifest(manifest_path)
        base_dir = Path(loaded.resolve(loaded.manifest.base)[0])
        runtime = load_model(loaded, dtype=dtype, device=device)
        setup_s = clock() - started
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        nfe = loaded.manifest.sampling.defaultNfe
        ours = pi_flow(runtime, side, nfe, batches, args.repeats, device)
        ours_peak = peak_gib(device)
        guidance = loaded.manifest.guidance.default
        del runtime
        if device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        theirs = diffusers_baseline(base_dir, dtype, device, side, baseline_steps, batches, args.repeats, guidance)
        theirs_peak = peak_gib(device)

    report(args.profile, device, dtype, side, nfe, batches, baseline_steps, ours, theirs, ours_peak, theirs_peak,
           setup_s, args.json)


def report(profile, device, dtype, side, nfe, batches, baseline_steps, ours, theirs, ours_peak, theirs_peak,
           setup_s, json_path):
    one = ours[1]
    timing = 'process CPU time, 1 thread' if device.type == 'cpu' else 'wall time'
    print(f'\n**PyTorch backend** — profile `{profile}`, {device.type}, {str(dtype).removeprefix("torch.")}, '
          f'{side}², {nfe} NFE, {timing} (setup {setup_s:.1f} s)\n')
    print(f'| measurement | result |\n|---|---|')
    print(f'| student forward, batch 1 | {one["forward_ms"]:.2f} ms |')
    print(f'| policy rollout per NFE, batch 1 | {one["rollout_ms"]:.2f} ms = '
          f'**{100 * one["rollout_ms"] / one["forward_ms"]:.1f} %** of the forward (target ≤ 3 %) |')
    print('\n| batch | π-Flow, images/s | ' + ' | '.join(f'FluxPipeline {s} steps, images/s' for s in baseline_steps)
          + ' | ' + ' | '.join(f'π-Flow / {s} steps' for s in baseline_steps) + ' |')
    print('|---:|---:|' + '---:|' * (2 * len(baseline_steps)))
    for rows in batches:
        row = [f'{ours[rows]["images_per_s"]:.3g}'] + [f'{theirs[(s, rows)]:.3g}' for s in baseline_steps]
        row += [f'{ours[rows]["images_per_s"] / theirs[(s, rows)]:.2f}×' for s in baseline_steps]
        print(f'| {rows} | ' + ' | '.join(row) + ' |')
    if ours_peak is not None:
        print(f'\npeak GPU memory: π-Flow {ours_peak:.1f} GiB, FluxPipeline {theirs_peak:.1f} GiB')
    if json_path:
        json_path.write_text(json.dumps({
            'profile': profile, 'device': device.type, 'dtype': str(dtype), 'side': side, 'nfe': nfe,
            'pi_flow': {str(k): v for k, v in ours.items()},
            'flux_pipeline': {f'{s}x{b}': v for (s, b), v in theirs.items()},
            'peak_gib': {'pi_flow': ours_peak, 'flux_pipeline': theirs_peak}, 'setup_s': setup_s}, indent=2))


if __name__ == '__main__':
    main()
