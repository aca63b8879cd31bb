/**
 * @module bench/load
 * `npm run bench -- load`: sustained concurrency against the local stack (two real backend processes,
 * the worker under wrangler dev), then an audit that nothing was lost or duplicated.
 *
 * Phases, each on a fresh stack, every ratio against the baseline of the same run:
 * 1. baseline  — concurrency 1 (BENCH_BASELINE_SECONDS, default 5 s)
 * 2. capacity  — concurrency 64, quota out of the way (BENCH_SECONDS, default 20 s)
 * 3. shedding  — concurrency 64 with a 200-image/min quota and backend queues of 4, so load must be
 *                shed as 429 (quota) / 503 (queues, circuits) — never as another 5xx
 * Each request is a distinct seeded generation (no cache hits) carrying a unique Idempotency-Key. The
 * audit then GETs every accepted id (must be finished: succeeded, or failed with its error), replays
 * every accepted Idempotency-Key (must return the same id, `Idempotent-Replayed: true`), and checks
 * that no id was handed out twice.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { type Stack, startStack } from '../test/support/stack.ts'

const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? 64)
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 20)
const BASELINE_SECONDS = Number(process.env['BENCH_BASELINE_SECONDS'] ?? 5)
const REQUEST_TIMEOUT_MS = 60_000

interface Sample {
  key: string
  body: string
  status: number
  ms: number
  id: string | undefined
  retryAfter: string | null
  error?: string
}

interface PhaseResult {
  name: string
  concurrency: number
  seconds: number
  samples: Sample[]
  audit: {
    accepted: number
    finished: number
    lost: number
    duplicates: number
    replayMismatch: number
    replayDeferred: number
  }
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

async function post(stack: Stack, body: string, key: string): Promise<Response> {
  return fetch(`${stack.workerUrl}/v1/generations`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${stack.apiKey}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': key,
    },
    body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
}

/** Runs `concurrency` closed-loop clients for `seconds`. */
async function drive(stack: Stack, concurrency: number, seconds: number, run: string) {
  const samples: Sample[] = []
  const deadline = performance.now() + seconds * 1000
  let n = 0
  const client = async () => {
    while (performance.now() < deadline) {
      const i = n++
      const key = `load-${run}-${i}`
      const body = JSON.stringify({ prompt: 'a load test', seed: i, size: 32 })
      const started = performance.now()
      try {
        const response = await post(stack, body, key)
        const json = (await response.json()) as { id?: string; generationId?: string }
        samples.push({
          key,
          body,
          status: response.status,
          ms: performance.now() - started,
          id: json.id ?? json.generationId,
          retryAfter: response.headers.get('retry-after'),
        })
      } catch (error) {
        samples.push({
          key,
          body,
          status: 0,
          ms: performance.now() - started,
          id: undefined,
          retryAfter: null,
          error: (error as Error).message,
        })
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, client))
  return samples
}

/** Every accepted generation finished exactly once and replays to itself. */
async function audit(stack: Stack, samples: Sample[]): Promise<PhaseResult['audit']> {
  const accepted = samples.filter((s) => s.id !== undefined)
  const ids = new Map<string, number>()
  for (const s of accepted) ids.set(s.id!, (ids.get(s.id!) ?? 0) + 1)
  const duplicates = [...ids.values()].filter((c) => c > 1).length
  let finished = 0
  let lost = 0
  let replayMismatch = 0
  let replayDeferred = 0
  const queue = [...accepted]
  const worker = async () => {
    for (let s = queue.shift(); s; s = queue.shift()) {
      const response = await fetch(`${stack.workerUrl}/v1/generations/${s.id}`, {
        headers: { Authorization: `Bearer ${stack.apiKey}` },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      })
      const record = (await response.json()) as { status?: string; images?: unknown[] }
      const done =
        response.status === 200 &&
        ((record.status === 'succeeded' && record.images?.length === 1) ||
          record.status === 'failed')
      if (done) finished++
      else lost++
      if (s.status === 200) {
        // A retry with the same key must be a replay of the same generation, never a second one.
        const replay = await post(stack, s.body, s.key)
        const json = (await replay.json()) as { id?: string }
        if (replay.status === 429 && replay.headers.get('retry-after') !== null) {
          // Quota is checked before Idempotency-Key (worker/src/routes/generations.ts): a retry in
          // an exhausted window is told when to come back, and nothing new runs.
          replayDeferred++
        } else if (
          replay.status !== 200 ||
          json.id !== s.id ||
          replay.headers.get('idempotent-replayed') !== 'true'
        ) {
          replayMismatch++
        }
      }
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker))
  return { accepted: accepted.length, finished, lost, duplicates, replayMismatch, replayDeferred }
}

async function phase(
  name: string,
  concurrency: number,
  seconds: number,
  options: Parameters<typeof startStack>[0],
): Promise<PhaseResult> {
  const stack = await startStack(options)
  try {
    const run = randomBytes(4).toString('hex')
    // Warm-up: model load in the worker isolate, onnxruntime sessions.
    await drive(stack, 2, 1, `${run}-warm`)
    const samples = await drive(stack, concurrency, seconds, run)
    return { name, concurrency, seconds, samples, audit: await audit(stack, samples) }
  } finally {
    await stack.stop()
  }
}

function summarize(result: PhaseResult) {
  const ok = result.samples.filter((s) => s.status === 200)
  const latencies = ok.map((s) => s.ms).sort((a, b) => a - b)
  const byStatus = new Map<number, number>()
  for (const s of result.samples) byStatus.set(s.status, (byStatus.get(s.status) ?? 0) + 1)
  const shed = (byStatus.get(429) ?? 0) + (byStatus.get(503) ?? 0)
  const otherErrors = result.samples.length - ok.length - shed
  const fiveXx = result.samples.filter((s) => s.status >= 500 && s.status !== 503).length
  const shedWithoutRetryAfter = result.samples.filter(
    (s) => (s.status === 429 || s.status === 503) && s.retryAfter === null,
  ).length
  return {
    requests: result.samples.length,
    okPerSecond: ok.length / result.seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    errorRate: otherErrors / Math.max(1, result.samples.length),
    shed,
    fiveXx,
    shedWithoutRetryAfter,
    statuses: [...byStatus]
      .sort(([a], [b]) => a - b)
      .map(([s, n]) => `${s}×${n}`)
      .join(' '),
  }
}

const fast = { PIFLOW_RATE_LIMIT: '1000000/60', PIFLOW_SSE_KEEPALIVE_MS: '15000' }
const results = [
  await phase('baseline', 1, BASELINE_SECONDS, { backends: 2, env: fast }),
  await phase('capacity', CONCURRENCY, SECONDS, { backends: 2, env: fast }),
  await phase('shedding', CONCURRENCY, SECONDS, {
    backends: 2,
    env: { PIFLOW_RATE_LIMIT: '200/60' },
    backendArgs: ['--queue-limit', '4'],
  }),
]
const base = summarize(results[0]!)
console.log(
  `\n## load: concurrency ${CONCURRENCY}, ${SECONDS} s per phase (baseline: concurrency 1, ${BASELINE_SECONDS} s)\n`,
)
console.log(
  '| phase | conc | requests | ok/s | × baseline | p50 ms | p99 ms | error rate | shed 429/503 | 5xx (not 503) | shed w/o Retry-After | accepted | finished | lost | duplicated ids | bad replays | replays 429 | statuses |',
)
console.log(
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
)
let violations = 0
const rows: string[] = []
for (const result of results) {
  const s = summarize(result)
  const a = result.audit
  violations += s.fiveXx + a.lost + a.duplicates + a.replayMismatch + s.shedWithoutRetryAfter
  rows.push(
    `| ${result.name} | ${result.concurrency} | ${s.requests} | ${s.okPerSecond.toFixed(1)} | ${(s.okPerSecond / base.okPerSecond).toFixed(2)} | ${s.p50.toFixed(0)} | ${s.p99.toFixed(0)} | ${(s.errorRate * 100).toFixed(2)} % | ${s.shed} | ${s.fiveXx} | ${s.shedWithoutRetryAfter} | ${a.accepted} | ${a.finished} | ${a.lost} | ${a.duplicates} | ${a.replayMismatch} | ${a.replayDeferred} | ${s.statuses} |`,
  )
}
for (const row of rows) console.log(row)
const transport = results.flatMap((r) =>
  r.samples.filter((s) => s.status === 0).map((s) => s.error),
)
if (transport.length > 0) console.log(`\ntransport errors: ${[...new Set(transport)].join('; ')}`)
console.log(
  violations === 0
    ? '\nPASS: zero 5xx other than 503, zero lost or duplicated generations, every shed response has Retry-After.'
    : `\nFAIL: ${violations} violation(s) (see the table).`,
)
if (violations > 0) process.exitCode = 1

// The last run's table also goes into test/RELIABILITY.md (its own section; the suites leave it alone).
const reportPath = new URL('../test/RELIABILITY.md', import.meta.url)
const begin = '<!-- BEGIN bench:load -->'
const end = '<!-- END bench:load -->'
const report = readFileSync(reportPath, 'utf8')
const from = report.indexOf(begin)
const to = report.indexOf(end)
if (from >= 0 && to > from) {
  const section = [
    `Last run ${new Date().toISOString().slice(0, 16)}Z, load average ${loadavg()[0]!.toFixed(1)} on this 2-core machine; concurrency ${CONCURRENCY}, ${SECONDS} s per phase.`,
    '',
    '| phase | conc | requests | ok/s | × baseline | p50 ms | p99 ms | error rate | shed 429/503 | 5xx (not 503) | shed w/o Retry-After | accepted | finished | lost | duplicated ids | bad replays | replays 429 | statuses |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
    '',
    violations === 0 ? 'Verdict: PASS.' : `Verdict: FAIL (${violations} violations).`,
  ].join('\n')
  writeFileSync(
    reportPath,
    `${report.slice(0, from + begin.length)}\n${section}\n${report.slice(to)}`,
  )
}
