/**
 * @module bench/worker
 * `npm run bench -- worker`: the edge worker (wrangler dev, workerd) against a real backend process,
 * every ratio against a baseline measured in the same run.
 *
 * 1. Worker overhead: one 4-NFE generation through the worker vs the same generation done by calling
 *    the backend directly (4 × /step with the same seeded tensors). Measured for backend integration
 *    (same work on both sides: the difference is the worker: auth, validation, quota/ledger Durable
 *    Objects, routing, PNG encoding, R2) and for edge integration (the worker also runs the rollout).
 * 2. Cache-hit latency (seeded repeat) vs generation latency.
 * 3. Requests/s for cache hits at concurrency 32 with autocannon.
 * 4. The worker's CPU time per request: utime + stime of its processes (/proc/<pid>/stat) before and
 *    after BENCH_CPU_N requests of each series, less what the same processes burn idle over the same
 *    wall time. Split into the workerd running the worker (with wrangler's local KV, R2 and Durable
 *    Object simulators, which share its process), the workerd of wrangler dev's local proxy hop (no
 *    production counterpart) and wrangler's node.
 *
 * 5. Jobs (bench/support/jobs.ts): cancel latency as a ratio of one NFE step, and webhook delivery
 *    latency at 50 concurrent generations as a ratio of their JSON response time.
 *
 * 6. With BENCH_MODEL_DIR (a model directory besides models/, e.g. an export of piflow-emoji-v2): the
 *    same stack also serves that model; its generation series (wall and CPU) run in the same rounds,
 *    each as a ratio to the shipped model's, plus the most images per request at its largest size.
 *
 * Env: BENCH_N rounds (one sample of each generation series, five cache hits; default 40),
 * BENCH_SECONDS autocannon duration (default 10), BENCH_CPU_N requests per CPU series (default 100),
 * BENCH_MODEL_DIR (above), BENCH_JOBS=0 skips part 5.
 */

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { createTokenizer, type Manifest, parseManifest } from '@piflow/models'
import { MAX_COUNT } from '@piflow/protocol'
import {
  ROOT,
  randomApiKey,
  randomSecret,
  type Service,
  startBackend,
  startWorker,
} from '../scripts/local-stack.ts'
import { listenerPid, pidsInGroup, processGroupOf } from '../test/reliability/support/processes.ts'
import { generateOverSteps } from '../test/support/step-client.ts'
import { benchJobs } from './support/jobs.ts'

interface AutocannonResult {
  requests: { average: number; total: number }
  latency: { p50: number; p99: number; average: number }
  non2xx: number
  errors: number
}
type Autocannon = (options: {
  url: string
  connections: number
  duration: number
  method: string
  headers: Record<string, string>
  body: string
}) => Promise<AutocannonResult>
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

const N = Number(process.env.BENCH_N ?? 40)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const CPU_N = Number(process.env.BENCH_CPU_N ?? 100)
const PROMPT = 'red apple'

/** A model the bench generates with, and the prompt's token ids for the direct series. */
function benchModel(dir: string) {
  const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')))
  const tokenizer = createTokenizer(
    JSON.parse(readFileSync(join(dir, manifest.files[manifest.text.tokenizer]!.path), 'utf8')),
  )
  return { dir, manifest, promptIds: tokenizer.encode(PROMPT) }
}
const shipped = benchModel(join(ROOT, 'models/piflow-emoji'))
const { manifest, promptIds } = shipped
const extraModel = process.env.BENCH_MODEL_DIR ? benchModel(process.env.BENCH_MODEL_DIR) : undefined
const extraDirs = extraModel ? [extraModel.dir] : []

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** What a runner reports from the worker's Server-Timing: its total and its wait on backends. */
type ServerTimes = { total: number; backend: number; store: number } | undefined
type Runner = () => Promise<ServerTimes>
interface Stats {
  p50: number
  p99: number
  serverP50: number | undefined
  /** p50 of (total − backend): the worker's own time, storage round trips included */
  ownP50: number | undefined
  ownP99: number | undefined
  /** p50 of (total − backend − store): request handling without the final durable writes */
  handlingP50: number | undefined
}

/**
 * Client-observed latency of each runner (a runner may return the worker's own time from
 * Server-Timing). Samples are taken round-robin, one of each series per round, so a load spike on
 * this shared machine hits every series alike instead of skewing one of them.
 */
async function interleaved<K extends string>(
  runners: Record<K, { run: Runner; perRound: number }>,
  rounds: number,
  warmup = 3,
): Promise<Record<K, Stats>> {
  const entries = Object.entries(runners) as [K, { run: Runner; perRound: number }][]
  const samples = new Map<
    K,
    { times: number[]; server: number[]; own: number[]; handling: number[] }
  >()
  for (const [name, { run }] of entries) {
    samples.set(name, { times: [], server: [], own: [], handling: [] })
    for (let i = 0; i < warmup; i++) await run()
  }
  for (let round = 0; round < rounds; round++) {
    for (const [name, { run, perRound }] of entries) {
      const bucket = samples.get(name)!
      for (let i = 0; i < perRound; i++) {
        const started = performance.now()
        const inWorker = await run()
        bucket.times.push(performance.now() - started)
        if (inWorker !== undefined) {
          bucket.server.push(inWorker.total)
          bucket.own.push(inWorker.total - inWorker.backend)
          bucket.handling.push(inWorker.total - inWorker.backend - inWorker.store)
        }
      }
    }
  }
  const out = {} as Record<K, Stats>
  for (const [name, { times, server, own, handling }] of samples) {
    for (const list of [times, server, own, handling]) list.sort((x, y) => x - y)
    out[name] = {
      p50: quantile(times, 0.5),
      p99: quantile(times, 0.99),
      serverP50: server.length > 0 ? quantile(server, 0.5) : undefined,
      ownP50: own.length > 0 ? quantile(own, 0.5) : undefined,
      ownP99: own.length > 0 ? quantile(own, 0.99) : undefined,
      handlingP50: handling.length > 0 ? quantile(handling, 0.5) : undefined,
    }
  }
  return out
}

/**
 * POST /v1/generations; returns the JSON and, from `Server-Timing`, the worker's total time and its
 * wait on backend calls (`backend`, absent on cache hits).
 */
async function viaWorker(
  url: string,
  key: string,
  body: object,
): Promise<{ json: { cached?: boolean }; serverMs: ServerTimes }> {
  const res = await fetch(`${url}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
  const json = (await res.json()) as { cached?: boolean }
  if (!res.ok) throw new Error(`worker ${res.status}: ${JSON.stringify(json)}`)
  const timing = res.headers.get('Server-Timing') ?? ''
  const metric = (name: string) =>
    /;dur=([\d.]+)/.exec(timing.split(',').find((m) => m.trim().startsWith(`${name};`)) ?? '')?.[1]
  const total = metric('total')
  return {
    json,
    serverMs:
      total === undefined
        ? undefined
        : {
            total: Number(total),
            backend: Number(metric('backend') ?? 0),
            store: Number(metric('store') ?? 0),
          },
  }
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }))

/** CPU time (user + system, all threads) `pid` has used, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 14 and 15 of stat(5) (utime, stime) are 12 and 13 after the command name.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS
}

/** A worker's processes by role (see the module comment). */
interface WorkerProcesses {
  worker: number[]
  proxy: number[]
  wrangler: number[]
}

function workerProcesses(url: string): WorkerProcesses {
  const proxy = listenerPid(url)
  const pgid = proxy === undefined ? undefined : processGroupOf(proxy)
  if (proxy === undefined || pgid === undefined) throw new Error(`no process serves ${url}`)
  const comm = (pid: number) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  const group = pidsInGroup(pgid)
  return {
    worker: group.filter((pid) => pid !== proxy && comm(pid) === 'workerd'),
    proxy: [proxy],
    wrangler: group.filter((pid) => comm(pid) !== 'workerd'),
  }
}

type CpuSample = Record<keyof WorkerProcesses, number>
const sampleCpu = (p: WorkerProcesses): CpuSample => ({
  worker: p.worker.reduce((sum, pid) => sum + cpuMs(pid), 0),
  proxy: p.proxy.reduce((sum, pid) => sum + cpuMs(pid), 0),
  wrangler: p.wrangler.reduce((sum, pid) => sum + cpuMs(pid), 0),
})

/** CPU ms per request of each role over `n` sequential runs, less the idle rate over the same time. */
async function cpuPerRequest(
  processes: WorkerProcesses,
  idlePerMs: CpuSample,
  n: number,
  run: () => Promise<unknown>,
): Promise<CpuSample & { wallMs: number }> {
  const before = sampleCpu(processes)
  const started = performance.now()
  for (let i = 0; i < n; i++) await run()
  const wall = performance.now() - started
  const after = sampleCpu(processes)
  const per = (role: keyof CpuSample) =>
    Math.max(0, after[role] - before[role] - idlePerMs[role] * wall) / n
  return { worker: per('worker'), proxy: per('proxy'), wrangler: per('wrangler'), wallMs: wall / n }
}

/** What the processes burn doing nothing (timers, GC), per ms of wall time, over `ms`. */
async function idleCpu(processes: WorkerProcesses, ms: number): Promise<CpuSample> {
  const before = sampleCpu(processes)
  const started = performance.now()
  await new Promise((r) => setTimeout(r, ms))
  const wall = performance.now() - started
  const after = sampleCpu(processes)
  return {
    worker: (after.worker - before.worker) / wall,
    proxy: (after.proxy - before.proxy) / wall,
    wrangler: (after.wrangler - before.wrangler) / wall,
  }
}

const fmt = (ms: number) => ms.toFixed(1)
const services: Service[] = []
try {
  const secret = randomSecret()
  const key = randomApiKey('bench')
  const backend = await startBackend({ secret, modelDirs: extraDirs })
  services.push(backend)
  const common = {
    backends: [{ id: 'local', url: backend.url }],
    backendSecret: secret,
    devApiKey: key,
    signingSecret: randomSecret(),
    modelDirs: extraDirs,
    addModels: extraModel ? [extraModel.manifest.id] : [],
  }
  const [edgeWorker, backendWorker] = await Promise.all([
    startWorker({ ...common, vars: { PIFLOW_RATE_LIMIT: '100000000/60' } }),
    startWorker({
      ...common,
      vars: { PIFLOW_RATE_LIMIT: '100000000/60', PIFLOW_INTEGRATION: 'backend' },
    }),
  ])
  services.push(edgeWorker, backendWorker)

  // Unseeded requests are never cached, so every generation sample is a full generation.
  let seed = 1
  const cachedBody = { prompt: PROMPT, seed: 4242 }
  await viaWorker(edgeWorker.url, key, cachedBody)
  /** The generation series of another model, run in the same rounds as the shipped model's. */
  const extraSeries = (model: NonNullable<typeof extraModel>) => {
    const body = { model: model.manifest.id, prompt: PROMPT }
    return {
      extraDirect: {
        perRound: 1,
        run: async () => {
          await generateOverSteps(
            { url: backend.url, secret },
            model.manifest,
            model.promptIds,
            seed++,
          )
          return undefined
        },
      },
      extraBackendIntegration: {
        perRound: 1,
        run: async () => (await viaWorker(backendWorker.url, key, body)).serverMs,
      },
      extraEdgeIntegration: {
        perRound: 1,
        run: async () => (await viaWorker(edgeWorker.url, key, body)).serverMs,
      },
    }
  }
  const stats: Record<string, Stats> = await interleaved<string>(
    {
      direct: {
        perRound: 1,
        run: async () => {
          await generateOverSteps({ url: backend.url, secret }, manifest, promptIds, seed++)
          return undefined
        },
      },
      backendIntegration: {
        perRound: 1,
        run: async () => (await viaWorker(backendWorker.url, key, { prompt: PROMPT })).serverMs,
      },
      edgeIntegration: {
        perRound: 1,
        run: async () => (await viaWorker(edgeWorker.url, key, { prompt: PROMPT })).serverMs,
      },
      cacheHit: {
        perRound: 5,
        run: async () => {
          const { json, serverMs } = await viaWorker(edgeWorker.url, key, cachedBody)
          if (!json.cached) throw new Error('expected a cache hit')
          return serverMs
        },
      },
      ...(extraModel ? extraSeries(extraModel) : {}),
      // The local HTTP path alone (wrangler dev's proxy + workerd, no worker logic).
      health: {
        perRound: 5,
        run: async () => {
          await (await fetch(`${edgeWorker.url}/healthz`)).arrayBuffer()
          return undefined
        },
      },
    },
    N,
  )
  const directStats = stats.direct!
  const backendStats = stats.backendIntegration!
  const edgeStats = stats.edgeIntegration!
  const cacheStats = stats.cacheHit!
  const healthStats = stats.health!
  const load = await autocannon({
    url: `${edgeWorker.url}/v1/generations`,
    connections: 32,
    duration: SECONDS,
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(cachedBody),
  })

  // CPU per request, after the wall-clock series, on the same two workers.
  const edgeProcesses = workerProcesses(edgeWorker.url)
  const backendProcesses = workerProcesses(backendWorker.url)
  const [edgeIdle, backendIdle] = await Promise.all([
    idleCpu(edgeProcesses, 3000),
    idleCpu(backendProcesses, 3000),
  ])
  const cpu = {
    // The floor: workerd's HTTP handling and the worker's middleware, no storage, no backend.
    health: await cpuPerRequest(edgeProcesses, edgeIdle, CPU_N, async () => {
      await (await fetch(`${edgeWorker.url}/healthz`)).arrayBuffer()
    }),
    cacheHit: await cpuPerRequest(edgeProcesses, edgeIdle, CPU_N, () =>
      viaWorker(edgeWorker.url, key, cachedBody),
    ),
    backendIntegration: await cpuPerRequest(backendProcesses, backendIdle, CPU_N, () =>
      viaWorker(backendWorker.url, key, { prompt: PROMPT }),
    ),
    edgeIntegration: await cpuPerRequest(edgeProcesses, edgeIdle, CPU_N, () =>
      viaWorker(edgeWorker.url, key, { prompt: PROMPT }),
    ),
  }
  /** Per model: both integrations at the native size, and the most images at the largest size. */
  const modelCpu = async (model: typeof shipped) => {
    const one = { model: model.manifest.id, prompt: PROMPT }
    const most = {
      ...one,
      count: MAX_COUNT,
      size: Math.max(...model.manifest.image.outputSizes),
    }
    const fewer = Math.max(1, Math.round(CPU_N / MAX_COUNT))
    return {
      backendIntegration: await cpuPerRequest(backendProcesses, backendIdle, CPU_N, () =>
        viaWorker(backendWorker.url, key, one),
      ),
      edgeIntegration: await cpuPerRequest(edgeProcesses, edgeIdle, CPU_N, () =>
        viaWorker(edgeWorker.url, key, one),
      ),
      backendIntegrationMost: await cpuPerRequest(backendProcesses, backendIdle, fewer, () =>
        viaWorker(backendWorker.url, key, most),
      ),
      edgeIntegrationMost: await cpuPerRequest(edgeProcesses, edgeIdle, fewer, () =>
        viaWorker(edgeWorker.url, key, most),
      ),
    }
  }
  const perModel = extraModel
    ? { shipped: await modelCpu(shipped), extra: await modelCpu(extraModel) }
    : undefined

  console.log(
    `\n## worker bench (${N} samples per series; ${manifest.sampling.defaultNfe}-NFE ${manifest.id}, 1 image)\n`,
  )
  console.log(
    '| series | client p50 ms | client p99 ms | in-worker p50 ms | worker itself p50 / p99 ms (in-worker − backend) | of which request handling p50 ms (− store) | client vs direct p50 |',
  )
  console.log('|---|---|---|---|---|---|---|')
  const opt = (v: number | undefined) => (v === undefined ? '–' : fmt(v))
  const row = (name: string, s: Stats) =>
    console.log(
      `| ${name} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${opt(s.serverP50)} | ${opt(s.ownP50)} / ${opt(s.ownP99)} | ${opt(s.handlingP50)} | ${(s.p50 / directStats.p50).toFixed(2)}× (+${fmt(s.p50 - directStats.p50)} ms) |`,
    )
  row('backend directly (4 × /step)', directStats)
  row('worker, backend integration', backendStats)
  row('worker, edge integration', edgeStats)
  row('worker, cache hit', cacheStats)
  row('worker /healthz (local HTTP path only)', healthStats)
  // Two views of the overhead: what the worker adds by itself (its Server-Timing total minus its
  // wait on backend calls: auth, validation, Durable Objects, R2, PNG), and what a client sees over
  // calling the backend directly, which also pays wrangler dev's local proxy hop (≈ /healthz here;
  // production has no such hop).
  console.log(
    `\nworker overhead, backend integration: in-worker p50 ${opt(backendStats.ownP50)} ms / p99 ${opt(backendStats.ownP99)} ms (target p50 ≤ 2 ms), ` +
      `of which request handling p50 ${opt(backendStats.handlingP50)} ms and the final R2 + Ledger writes the rest; ` +
      `client-observed p50 +${fmt(backendStats.p50 - directStats.p50)} ms, p99 +${fmt(backendStats.p99 - directStats.p99)} ms, ratio ${(backendStats.p50 / directStats.p50).toFixed(3)}, ` +
      `of which the local proxy hop ≈ ${fmt(healthStats.p50)} ms`,
  )
  console.log(
    `cache hit vs generation (edge): ${(edgeStats.p50 / cacheStats.p50).toFixed(1)}× faster at p50 client-observed, ` +
      `${edgeStats.serverP50 !== undefined && cacheStats.serverP50 ? (edgeStats.serverP50 / cacheStats.serverP50).toFixed(1) : '–'}× in-worker (target ≥ 20×)`,
  )
  console.log(
    `\n### worker CPU per request (${CPU_N} sequential requests per series; /proc utime+stime, ${1000 / CLOCK_TICKS} ms ticks, idle rate subtracted)\n`,
  )
  console.log(
    '| series | workerd running the worker (incl. local KV/R2/DO simulators) ms | wrangler dev proxy workerd ms | wrangler node ms | wall ms/request |',
  )
  console.log('|---|---|---|---|---|')
  const cpuRow = (name: string, c: (typeof cpu)['cacheHit']) =>
    console.log(
      `| ${name} | ${c.worker.toFixed(2)} | ${c.proxy.toFixed(2)} | ${c.wrangler.toFixed(2)} | ${fmt(c.wallMs)} |`,
    )
  cpuRow('/healthz (no storage, no backend)', cpu.health)
  cpuRow('cache hit', cpu.cacheHit)
  cpuRow('generation, backend integration', cpu.backendIntegration)
  cpuRow('generation, edge integration', cpu.edgeIntegration)
  // The edge series also runs the 4 rollouts; the backend series does the same worker work without them.
  const rollout = cpu.edgeIntegration.worker - cpu.backendIntegration.worker
  console.log(
    `\nworker CPU per request (target ≤ 2 ms without the edge rollout): cache hit ${cpu.cacheHit.worker.toFixed(2)} ms, ` +
      `backend integration ${cpu.backendIntegration.worker.toFixed(2)} ms, edge integration ${cpu.edgeIntegration.worker.toFixed(2)} ms ` +
      `(of which the ${manifest.sampling.defaultNfe} rollouts ≈ ${rollout.toFixed(2)} ms = edge − backend integration)`,
  )
  if (extraModel && perModel) printModelComparison(extraModel.manifest, stats, perModel)
  console.log(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  )
  console.log(
    `cache hits at concurrency 32 (autocannon, ${SECONDS} s): ${load.requests.average.toFixed(0)} req/s, ` +
      `latency p50 ${load.latency.p50} ms / p99 ${load.latency.p99} ms, ${load.non2xx} non-2xx, ${load.errors} errors`,
  )
} finally {
  await Promise.all(services.map((s) => s.stop()))
}

/** Part 6: another model's series as ratios to the shipped model's, measured in the same run. */
function printModelComparison(
  extra: Manifest,
  stats: Record<string, Stats>,
  cpu: Record<'shipped' | 'extra', Record<string, CpuSample & { wallMs: number }>>,
) {
  const shape = (m: Manifest) =>
    `${m.latent.channels}×${m.latent.height}×${m.latent.width}, ${m.policy.type === 'gm' ? `K=${m.policy.k}` : m.policy.type}`
  console.log(
    `\n### ${extra.id} (${shape(extra)}) vs ${manifest.id} (${shape(manifest)}), same run, ${manifest.sampling.defaultNfe} NFE\n`,
  )
  console.log(`| series | ${manifest.id} | ${extra.id} | ratio |`)
  console.log('|---|---|---|---|')
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || a === 0 ? '–' : `${(b / a).toFixed(2)}×`
  const opt = (v: number | undefined) => (v === undefined ? '–' : fmt(v))
  /** [row, series, statistic]; the other model's series is `extra<Series>` (extraSeries above). */
  const wallRows: [string, string, 'p50' | 'ownP50'][] = [
    ['client p50 ms, backend directly (4 × /step)', 'direct', 'p50'],
    ['client p50 ms, worker, backend integration', 'backendIntegration', 'p50'],
    ['client p50 ms, worker, edge integration', 'edgeIntegration', 'p50'],
    ['worker itself p50 ms, backend integration', 'backendIntegration', 'ownP50'],
    ['worker itself p50 ms, edge integration', 'edgeIntegration', 'ownP50'],
  ]
  for (const [label, series, statistic] of wallRows) {
    const a = stats[series]?.[statistic]
    const b = stats[`extra${series[0]!.toUpperCase()}${series.slice(1)}`]?.[statistic]
    console.log(`| ${label} | ${opt(a)} | ${opt(b)} | ${ratio(a, b)} |`)
  }
  const cpuRow = (label: string, key: string) => {
    const a = cpu.shipped[key]?.worker
    const b = cpu.extra[key]?.worker
    console.log(`| worker CPU ms/request, ${label} | ${opt(a)} | ${opt(b)} | ${ratio(a, b)} |`)
  }
  cpuRow('backend integration, 1 image, native size', 'backendIntegration')
  cpuRow('edge integration, 1 image, native size', 'edgeIntegration')
  cpuRow(`backend integration, ${MAX_COUNT} images, largest size`, 'backendIntegrationMost')
  cpuRow(`edge integration, ${MAX_COUNT} images, largest size`, 'edgeIntegrationMost')
  const rollouts = (m: 'shipped' | 'extra') =>
    (cpu[m].edgeIntegration?.worker ?? 0) - (cpu[m].backendIntegration?.worker ?? 0)
  console.log(
    `| worker CPU ms of the ${manifest.sampling.defaultNfe} edge rollouts (edge − backend integration), 1 image | ${fmt(rollouts('shipped'))} | ${fmt(rollouts('extra'))} | ${ratio(rollouts('shipped'), rollouts('extra'))} |\n`,
  )
}

if (process.env.BENCH_JOBS !== '0') await benchJobs()
