/**
 * @module bench/torch
 * `npm run bench -- torch`: the PyTorch backend on this machine's CPU with the tiny fixture model
 * (bench/torch_bench.py --profile fixture): student forward, rollout per NFE, images/s at batch 1/4/8
 * against diffusers' FluxPipeline on the same weights at 4 and 50 steps, in one run. Correctness-scale
 * timings only; the full-size numbers come from bench/torch_gpu.sh on a GPU. Extra arguments after
 * `torch` go to the Python bench (e.g. `npm run bench -- torch --profile small`). Then, the edge's
 * overhead per whole generation against the backend called directly (bench/support/torch-edge.ts;
 * `--edge-only` runs just that part).
 */

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { benchTorchEdge } from './support/torch-edge.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const extra = process.argv.slice(3).filter((arg) => arg !== '--edge-only')
const edgeOnly = process.argv.includes('--edge-only')
const args = extra.length > 0 ? extra : ['--profile', 'fixture', '--device', 'cpu']
if (!edgeOnly) {
  const run = spawnSync('bash', ['scripts/torch-py.sh', 'bench/torch_bench.py', ...args], {
    cwd: root,
    stdio: 'inherit',
  })
  if (run.status !== 0) {
    process.stderr.write(`bench torch: bench/torch_bench.py exited with ${run.status}\n`)
    process.exitCode = 1
  }
}
// A GPU profile benches the backend alone; the edge comparison is a CPU fixture-scale one.
if (extra.length === 0 || edgeOnly) await benchTorchEdge()
