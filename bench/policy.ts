/**
 * @module bench/policy
 * `npm run bench -- policy`: one GM substep (posterior velocity + Euler update) at the released models'
 * shapes, with every baseline measured in the same run:
 * - the policy module (`createGmPolicy` + `rollout`): Float32Array on the wasm kernel (default) and the
 *   JS kernel, and Float64Array (JS);
 * - a direct transcription of the formulas (bench/support/gm-naive.ts: no precomputation, allocating);
 * - the same math vectorised in PyTorch CPU, one thread (`/usr/bin/python3 bench/policy_torch.py`);
 * - a plain copy of the means buffer (`Float32Array.prototype.set`), the memory-bound floor.
 * GB/s = bytes that must be read per substep (means, log-weights, x_t, x_src at the path's element
 * size) / time. Env: BENCH_REPEATS (default 5).
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { configureGmKernel, createGmPolicy, type FloatArray, rollout, warp } from '@piflow/policy'
import { naiveGmSubstep } from './support/gm-naive.ts'
import {
  benchRepeats,
  BENCH_EPS as EPS,
  firstStep,
  gmBenchInputs,
  median,
  policyShape,
  BENCH_SHAPES as SHAPES,
  type BenchShape as Shape,
} from './support/shapes.ts'

const REPEATS = benchRepeats(5)
/** The policy-module rows: float32 on each GM kernel, float64 (always the JS kernel). */
const VARIANTS = [
  ['float32', 'wasm'],
  ['float32', 'js'],
  ['float64', 'js'],
] as const
const PYTHON = '/usr/bin/python3'
const TORCH_SCRIPT = fileURLToPath(new URL('./policy_torch.py', import.meta.url))

/**
 * Median CPU time (user + system of this process) of `fn` in ms over `repeats` samples after a warm-up;
 * each sample runs `fn` `inner` times. CPU time rather than wall time because the bench machines are
 * shared: a descheduled process would otherwise charge other jobs' time to long-running rows only.
 */
function timeMs(fn: () => void, repeats = REPEATS, inner = 1): number {
  fn()
  const times: number[] = []
  for (let r = 0; r < repeats; r++) {
    const t0 = process.cpuUsage()
    for (let i = 0; i < inner; i++) fn()
    const t = process.cpuUsage(t0)
    times.push((t.user + t.system) / 1000 / inner)
  }
  return median(times)
}

interface Row {
  path: string
  msPerSubstep: number
  bytesRead: number
  note?: string
}

function benchShape(s: Shape): Row[] {
  const { B, K, C, H, W } = s
  const HW = H * W
  const step = firstStep(s)
  const n = step.numSubsteps
  const h = (step.rawSrc - step.rawDst) / n
  const sigmas = Array.from({ length: n + 1 }, (_, i) =>
    warp(Math.max(step.rawSrc - i * h, 0), s.shift),
  )

  // Inputs: reproducible noise; log-weights of a plausible scale; σ_src = 1 (first NFE).
  const { meansU, logweights, logstds, xSrc } = gmBenchInputs(s, (n) => new Float32Array(n))
  const readElements = B * (K * C * HW + K * HW + 2 * C * HW)
  const rows: Row[] = []

  // Each variant runs in its own process so V8 sees one typed-array kind in the kernel (as in production).
  for (const [dtype, kernel] of VARIANTS)
    rows.push(runChild(SHAPES.indexOf(s), dtype, kernel, readElements))

  // naive transcription: a few substeps are enough (it is slow and allocates ~3 K·C·H·W arrays each)
  const naiveSteps = Math.min(n, s.H >= 128 ? 3 : 16)
  const inputs = {
    B,
    K,
    C,
    H,
    W,
    meansU,
    logweights,
    logstds,
    xSrc,
    sigmaSrc: step.sigmaSrc,
    eps: EPS,
  }
  const naiveMs = timeMs(() => {
    let x: Float32Array = xSrc
    for (let i = 0; i < naiveSteps; i++) x = naiveGmSubstep(inputs, x, sigmas[i], sigmas[i + 1])
  }, 3)
  rows.push({
    path: 'direct transcription (allocating)',
    msPerSubstep: naiveMs / naiveSteps,
    bytesRead: readElements * 4,
  })

  const torch = runTorch(s, sigmas)
  rows.push(
    typeof torch === 'string'
      ? { path: 'PyTorch CPU, 1 thread', msPerSubstep: Number.NaN, bytesRead: 0, note: torch }
      : {
          path: 'PyTorch CPU, 1 thread',
          msPerSubstep: torch.ms,
          bytesRead: readElements * 4,
          note: `torch ${torch.version}, float32, means_x0 precomputed per NFE`,
        },
  )

  const copyDst = new Float32Array(meansU.length)
  const copyMs = timeMs(
    () => copyDst.set(meansU),
    REPEATS,
    Math.max(1, Math.round(2e8 / meansU.byteLength)),
  )
  rows.push({
    path: 'copy of the means buffer (floor)',
    msPerSubstep: copyMs,
    bytesRead: meansU.byteLength,
  })
  return rows
}

/** Policy-module timing of one shape and dtype, in a child process (see `child` below). */
function runChild(
  shapeIndex: number,
  dtype: 'float32' | 'float64',
  kernel: 'wasm' | 'js',
  readElements: number,
): Row {
  const path = `policy module, ${dtype === 'float32' ? 'Float32Array' : 'Float64Array'}, ${kernel} kernel`
  const r = spawnSync(
    process.execPath,
    [...process.execArgv, SELF, '--child', String(shapeIndex), dtype, kernel],
    {
      encoding: 'utf8',
    },
  )
  const line = r.stdout?.trim().split('\n').pop() ?? ''
  if (r.status !== 0 || !line.startsWith('{')) {
    return {
      path,
      msPerSubstep: Number.NaN,
      bytesRead: 0,
      note: `failed: ${r.stderr?.trim().split('\n').pop()}`,
    }
  }
  const { segmentMs, buildMs, n } = JSON.parse(line) as {
    segmentMs: number
    buildMs: number
    n: number
  }
  return {
    path,
    msPerSubstep: segmentMs / n,
    bytesRead: readElements * (dtype === 'float32' ? 4 : 8),
    note: `+ ${buildMs.toFixed(1)} ms policy build per NFE`,
  }
}

/** Child: build the policy and time whole-segment rollouts (substeps as the sampler runs them). */
function child(shapeIndex: number, dtype: 'float32' | 'float64', kernel: 'wasm' | 'js'): void {
  configureGmKernel({ kernel })
  const s = SHAPES[shapeIndex]
  const shape = policyShape(s)
  const step = firstStep(s)
  const { xSrc: src, ...gm } = gmBenchInputs(
    s,
    (n): FloatArray => (dtype === 'float32' ? new Float32Array(n) : new Float64Array(n)),
  )
  const output = { type: 'gm' as const, k: s.K, ...gm }
  const x = src.slice()
  let policy = createGmPolicy(output, src, [step.sigmaSrc], shape, { eps: EPS })
  // Steady state, as the sampler builds one policy per NFE: the previous segment's policy is released
  // first, so its wasm memory is reused instead of faulting in fresh pages. 20 builds: the first few
  // run before V8 tiers the code up, and CPU time counts its compiler threads.
  const build = () => {
    policy.release?.()
    policy = createGmPolicy(output, src, [step.sigmaSrc], shape, { eps: EPS })
    policy.startRollout(src) // includes the per-NFE Gram precompute where the policy uses it
  }
  const buildMs = timeMs(build, 5, 4)
  const opts = {
    sigmaSrc: step.sigmaSrc,
    sigmaDst: step.sigmaDst,
    shift: s.shift,
    totalSubsteps: 128,
  }
  const segmentMs = timeMs(() => {
    x.set(src)
    rollout(policy, x, opts)
  })
  console.log(JSON.stringify({ segmentMs, buildMs, n: step.numSubsteps }))
}

/** ms per substep from the PyTorch script, or the reason it could not run. */
function runTorch(s: Shape, sigmas: number[]): { ms: number; version: string } | string {
  if (!existsSync(PYTHON)) return `skipped: ${PYTHON} not found`
  const cfg = { B: s.B, K: s.K, C: s.C, H: s.H, W: s.W, sigmas, repeats: 3 }
  const r = spawnSync(PYTHON, [TORCH_SCRIPT, JSON.stringify(cfg)], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' },
  })
  if (r.status !== 0)
    return `skipped: PyTorch unavailable (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`
  try {
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string)
    return { ms: out.ms_per_substep, version: out.torch }
  } catch {
    return `skipped: unexpected PyTorch output ${r.stdout.slice(0, 80)}`
  }
}

const SELF = fileURLToPath(import.meta.url)
const fmt = (v: number, digits = 3) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a')

const childAt = process.argv.indexOf('--child')
if (childAt >= 0) {
  child(
    Number(process.argv[childAt + 1]),
    process.argv[childAt + 2] as 'float32' | 'float64',
    process.argv[childAt + 3] as 'wasm' | 'js',
  )
  process.exit(0)
}

console.log(
  `# policy bench — one GM substep (velocity + Euler), CPU ms, median of ${REPEATS} runs\n`,
)
console.log(
  `node ${process.version}, ${process.arch}; one thread everywhere; same inputs and σ sequence for every row.\n`,
)
const summary: string[] = []
for (const s of SHAPES) {
  const rows = benchShape(s)
  const fast32 = rows[0].msPerSubstep
  const n = firstStep(s).numSubsteps
  console.log(
    `## ${s.name}: B=${s.B}, K=${s.K}, C=${s.C}, ${s.H}×${s.W}, ${n} substeps in the first NFE\n`,
  )
  console.log('| path | ms / substep | GB/s read | relative to policy module f32 (wasm) | note |')
  console.log('|---|---:|---:|---:|---|')
  for (const r of rows) {
    const gbs = r.bytesRead / (r.msPerSubstep * 1e6)
    const rel = r.msPerSubstep / fast32
    console.log(
      `| ${r.path} | ${fmt(r.msPerSubstep)} | ${fmt(gbs, 2)} | ${Number.isFinite(rel) ? `${fmt(rel, 2)}×` : 'n/a'} | ${r.note ?? ''} |`,
    )
  }
  console.log('')
  const torch = rows.find((r) => r.path.startsWith('PyTorch'))?.msPerSubstep ?? Number.NaN
  const naive = rows.find((r) => r.path.startsWith('direct'))?.msPerSubstep ?? Number.NaN
  const copy = rows.at(-1)?.msPerSubstep ?? Number.NaN
  summary.push(
    `- ${s.name}: ${fmt(naive / fast32, 1)}× faster than the direct transcription, ` +
      `${fmt(torch / fast32, 1)}× faster than PyTorch CPU (1 thread), ${fmt(fast32 / copy, 2)}× the means copy; ` +
      `${fmt(fast32 * n, 1)} ms per NFE (${n} substeps).`,
  )
}
console.log(
  'GB/s = bytes a direct evaluation must read per substep (means, log-weights, x_t, x_src) / time. ' +
    'The wasm kernel (Float32Array default) evaluates directly, f32x4 SIMD across pixels. The JS kernel at ' +
    'K ≤ C integrates in the span of the means (K² Gram work per pixel, built once per NFE: the "policy ' +
    'build" column), so its figure is an effective rate.\n',
)
console.log('Targets at 1024²: ≥ 5× faster than PyTorch CPU, within 3× of the means copy.\n')
console.log(summary.join('\n'))
