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
 *
 * Env: BENCH_N samples per latency series (default 40), BENCH_SECONDS autocannon duration (default 10).
 */

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createTokenizer, parseManifest } from '@piflow/models'
import { buildSchedule, decodeSafetensors, encodeSafetensors, randn } from '@piflow/policy'
import {
  ROOT,
  randomApiKey,
  randomSecret,
  type Service,
  startBackend,
  startWorker,
} from '../scripts/local-stack.ts'

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
const PROMPT = 'red apple'

const modelDir = join(ROOT, 'models/piflow-emoji')
const manifest = parseManifest(JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8')))
const tokenizer = createTokenizer(
  JSON.parse(readFileSync(join(modelDir, manifest.files[manifest.text.tokenizer]!.path), 'utf8')),
)
const nfe = manifest.sampling.defaultNfe
const perNfe = manifest.sampling.perNfe[String(nfe)]!
const schedule = buildSchedule({
  nfe,
  shift: perNfe.shift,
  finalStepSizeScale: perNfe.finalStepSizeScale,
  totalSubsteps: perNfe.totalSubsteps,
})
const { channels: C, height: H, width: W } = manifest.latent

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

async function series(run: () => Promise<void>, n = N, warmup = 5) {
  for (let i = 0; i < warmup; i++) await run()
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await run()
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) }
}

/** One generation against the backend directly: 4 × /step, as a client without the worker does it. */
async function direct(backendUrl: string, secret: string, seed: number): Promise<void> {
  let x = randn(new Float32Array(C * H * W), seed) as Float32Array
  const tokens = BigInt64Array.from(tokenizer.encode(PROMPT), (id) => BigInt(id))
  for (let k = 0; k < schedule.steps.length; k++) {
    const step = schedule.steps[k]!
    const temperature =
      perNfe.temperature === 'auto'
        ? step.temperature
        : k === schedule.steps.length - 1
          ? 1
          : perNfe.temperature
    const body = encodeSafetensors(
      {
        x: { dtype: 'F32', shape: [1, C, H, W], data: x },
        sigma: { dtype: 'F32', shape: [1], data: new Float32Array([step.sigmaSrc]) },
        tokens: { dtype: 'I64', shape: [1, tokens.length], data: tokens },
      },
      {
        nfe: String(nfe),
        sigma_dst: String(step.sigmaDst),
        shift: String(schedule.shiftUsed),
        total_substeps: String(schedule.totalSubsteps),
        temperature: String(temperature),
        eps: String(manifest.sampling.eps),
      },
    )
    const res = await fetch(`${backendUrl}/v1/models/${manifest.id}/step`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', 'X-Piflow-Backend-Secret': secret },
      body: body as Uint8Array<ArrayBuffer>,
    })
    if (!res.ok) throw new Error(`backend ${res.status}: ${await res.text()}`)
    const out = decodeSafetensors(new Uint8Array(await res.arrayBuffer())).tensors['x']!
    x = out.data as Float32Array
  }
}

async function viaWorker(url: string, key: string, body: object): Promise<unknown> {
  const res = await fetch(`${url}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
  const json = (await res.json()) as { cached?: boolean }
  if (!res.ok) throw new Error(`worker ${res.status}: ${JSON.stringify(json)}`)
  return json
}

const fmt = (ms: number) => ms.toFixed(1)
const services: Service[] = []
try {
  const secret = randomSecret()
  const key = randomApiKey('bench')
  const backend = await startBackend({ secret })
  services.push(backend)
  const common = {
    backends: [{ id: 'local', url: backend.url }],
    backendSecret: secret,
    devApiKey: key,
    signingSecret: randomSecret(),
  }
  const [edgeWorker, backendWorker] = await Promise.all([
    startWorker({ ...common, vars: { PIFLOW_RATE_LIMIT: '100000000/60' } }),
    startWorker({
      ...common,
      vars: { PIFLOW_RATE_LIMIT: '100000000/60', PIFLOW_INTEGRATION: 'backend' },
    }),
  ])
  services.push(edgeWorker, backendWorker)

  // Unseeded requests are never cached, so every sample is a full generation.
  let seed = 1
  const directStats = await series(() => direct(backend.url, secret, seed++))
  const backendStats = await series(async () => {
    await viaWorker(backendWorker.url, key, { prompt: PROMPT })
  })
  const edgeStats = await series(async () => {
    await viaWorker(edgeWorker.url, key, { prompt: PROMPT })
  })
  const cachedBody = { prompt: PROMPT, seed: 4242 }
  await viaWorker(edgeWorker.url, key, cachedBody)
  const cacheStats = await series(async () => {
    const json = (await viaWorker(edgeWorker.url, key, cachedBody)) as { cached: boolean }
    if (!json.cached) throw new Error('expected a cache hit')
  }, N * 5)
  const load = await autocannon({
    url: `${edgeWorker.url}/v1/generations`,
    connections: 32,
    duration: SECONDS,
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(cachedBody),
  })

  console.log(`\n## worker bench (${N} samples per series; ${nfe}-NFE ${manifest.id}, 1 image)\n`)
  console.log('| series | p50 ms | p99 ms | vs direct p50 |')
  console.log('|---|---|---|---|')
  const row = (name: string, s: { p50: number; p99: number }) =>
    console.log(
      `| ${name} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${(s.p50 / directStats.p50).toFixed(2)}× (+${fmt(s.p50 - directStats.p50)} ms) |`,
    )
  row('backend directly (4 × /step)', directStats)
  row('worker, backend integration', backendStats)
  row('worker, edge integration', edgeStats)
  row('worker, cache hit', cacheStats)
  console.log(
    `\nworker overhead (backend integration): p50 +${fmt(backendStats.p50 - directStats.p50)} ms, ` +
      `p99 +${fmt(backendStats.p99 - directStats.p99)} ms, ratio ${(backendStats.p50 / directStats.p50).toFixed(3)}`,
  )
  console.log(
    `cache hit vs generation (edge): ${(edgeStats.p50 / cacheStats.p50).toFixed(1)}× faster at p50`,
  )
  console.log(
    `cache hits at concurrency 32 (autocannon, ${SECONDS} s): ${load.requests.average.toFixed(0)} req/s, ` +
      `latency p50 ${load.latency.p50} ms / p99 ${load.latency.p99} ms, ${load.non2xx} non-2xx, ${load.errors} errors`,
  )
} finally {
  await Promise.all(services.map((s) => s.stop()))
}
