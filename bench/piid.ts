/**
 * @module bench/piid
 * `npm run bench -- piid`: the π-ID distillation segment (models/recipe/flow.py piid_segment + backward)
 * at the v2 student's shapes (B=16, K=8, 3×64×64, 128 substeps, M=4) on this machine's CPU, the current
 * code against flow.py at a baseline commit (git show), interleaved in one process
 * (bench/piid_bench.py). Runs in the torch-py environment with the recipe's environment (passive OpenMP
 * waits, glibc malloc thresholds: models/recipe/pipeline-common.sh). Extra arguments go to the Python bench
 * (`--rounds N`, `--baseline REV`, `--threads N`); BENCH_REPEATS sets the rounds (default 4).
 */

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const run = spawnSync(
  'bash',
  ['scripts/torch-py.sh', 'bench/piid_bench.py', ...process.argv.slice(3)],
  {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      OMP_WAIT_POLICY: 'PASSIVE',
      GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296',
    },
  },
)
if (run.status !== 0) {
  process.stderr.write(`bench piid: bench/piid_bench.py exited with ${run.status}\n`)
  process.exitCode = 1
}
