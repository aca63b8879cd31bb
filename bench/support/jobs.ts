/**
 * @module bench/support/jobs
 * The jobs part of `npm run bench -- worker` (issue 16), each figure a ratio against a baseline
 * measured in the same run:
 *
 * 1. Cancel latency: `POST /v1/generations/:id/cancel` sent while the backend runs the generation's
 *    second NFE → the backend has let go of it (its `/readyz` `stats.cancelled` counts it), as a ratio
 *    of one NFE step of the same generations run to the end (the mean gap between their SSE progress
 *    events). The backend is slowed by `--debug-run-delay-ms` (BENCH_CANCEL_DELAY_MS, default 200) so
 *    a cancel can land inside a step at all: the emoji student's own step is a few ms.
 * 2. Webhook delivery latency at BENCH_WEBHOOK_CONCURRENCY (default 50) concurrent generations: POST →
 *    its `completed` webhook received by a local HTTP server, p50 / p99, as a ratio of the same
 *    generations' JSON response time (POST → response).
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  randomApiKey,
  randomSecret,
  type Service,
  startBackend,
  startWorker,
} from '../../scripts/local-stack.ts'
import { sseEvents } from '../../test/support/sse.ts'

const CANCEL_ROUNDS = Number(process.env.BENCH_CANCEL_N ?? 10)
const CANCEL_DELAY_MS = Number(process.env.BENCH_CANCEL_DELAY_MS ?? 200)
const CONCURRENCY = Number(process.env.BENCH_WEBHOOK_CONCURRENCY ?? 50)

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}
const median = (values: number[]) => quantile(values, 0.5)
const fmt = (ms: number) => ms.toFixed(1)

async function stats(backendUrl: string): Promise<{ requests: number; cancelled: number }> {
  const res = await fetch(`${backendUrl}/readyz`)
  return ((await res.json()) as { stats: { requests: number; cancelled: number } }).stats
}

/** One streamed generation, to its end or until `onProgress` says stop; progress event times. */
async function streamed(
  workerUrl: string,
  key: string,
  onId?: (id: string) => Promise<void>,
): Promise<number[]> {
  const res = await fetch(`${workerUrl}/v1/generations`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${key}`,
      'Content-Type': 'application/json',
      Accept: 'text/event-stream',
    },
    body: JSON.stringify({ prompt: 'red apple', preview: false }),
  })
  const times: number[] = []
  const pending: Promise<void>[] = []
  for await (const event of sseEvents(res.body!)) {
    if (event.event === 'id' && onId) pending.push(onId(JSON.parse(event.data).id as string))
    if (event.event === 'progress') times.push(performance.now())
  }
  await Promise.all(pending)
  return times
}

/** A backend (with `args`) and a worker in front of it, unmetered; both pushed onto `services`. */
async function startPair(services: Service[], args: string[]) {
  const secret = randomSecret()
  const key = randomApiKey('bench')
  const backend = await startBackend({ secret, args })
  services.push(backend)
  const worker = await startWorker({
    backends: [{ id: 'bench', url: backend.url }],
    backendSecret: secret,
    devApiKey: key,
    signingSecret: randomSecret(),
    vars: { PIFLOW_RATE_LIMIT: '100000000/60' },
  })
  services.push(worker)
  return { backend, worker, key }
}

async function cancelLatency(): Promise<{ stepMs: number; cancelMs: number[] }> {
  const services: Service[] = []
  try {
    const { backend, worker, key } = await startPair(services, [
      '--debug-run-delay-ms',
      String(CANCEL_DELAY_MS),
    ])
    const steps: number[] = []
    const cancelMs: number[] = []
    for (let round = 0; round < CANCEL_ROUNDS; round++) {
      // Baseline: a generation run to the end; one NFE step = the gap between progress events.
      const times = await streamed(worker.url, key)
      for (let i = 1; i < times.length; i++) steps.push(times[i]! - times[i - 1]!)
      // Canceled while the backend runs its second NFE.
      const before = await stats(backend.url)
      await streamed(worker.url, key, async (id) => {
        while ((await stats(backend.url)).requests < before.requests + 2) {
          await new Promise((r) => setTimeout(r, 2))
        }
        const sent = performance.now()
        const res = await fetch(`${worker.url}/v1/generations/${id}/cancel`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${key}` },
        })
        await res.arrayBuffer()
        while ((await stats(backend.url)).cancelled <= before.cancelled) {
          if (performance.now() - sent > 10_000) throw new Error('the backend never let go')
        }
        cancelMs.push(performance.now() - sent)
      })
    }
    return { stepMs: median(steps), cancelMs }
  } finally {
    await Promise.all(services.map((s) => s.stop()))
  }
}

async function webhookLatency(): Promise<{ jsonMs: number[]; webhookMs: number[] }> {
  const services: Service[] = []
  const sentAt = new Map<string, number>()
  const deliveredAt = new Map<string, number>()
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const at = performance.now()
      const tag = new URL(req.url ?? '/', 'http://x').searchParams.get('tag') ?? ''
      if (!deliveredAt.has(tag)) deliveredAt.set(tag, at)
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`
  try {
    const { worker, key } = await startPair(services, [])
    const run = async (tag: string) => {
      const started = performance.now()
      sentAt.set(tag, started)
      const res = await fetch(`${worker.url}/v1/generations`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'red apple', webhook: `${base}/hook?tag=${tag}` }),
      })
      await res.arrayBuffer()
      if (res.status !== 200) throw new Error(`generation answered ${res.status}`)
      return performance.now() - started
    }
    await run('warmup')
    const tags = Array.from({ length: CONCURRENCY }, (_, i) => `g${i}`)
    const jsonMs = await Promise.all(tags.map(run))
    const deadline = performance.now() + 60_000
    while (tags.some((t) => !deliveredAt.has(t))) {
      if (performance.now() > deadline) throw new Error('webhooks missing after 60 s')
      await new Promise((r) => setTimeout(r, 10))
    }
    return { jsonMs, webhookMs: tags.map((t) => deliveredAt.get(t)! - sentAt.get(t)!) }
  } finally {
    await Promise.all(services.map((s) => s.stop()))
    await new Promise((resolve) => receiver.close(resolve))
  }
}

/** Runs both series and prints their table. */
export async function benchJobs(): Promise<void> {
  const cancel = await cancelLatency()
  const hooks = await webhookLatency()
  console.log(`\n### jobs (issue 16)\n`)
  console.log('| series | p50 ms | p99 ms | baseline p50 ms | ratio p50 / p99 |')
  console.log('|---|---|---|---|---|')
  const c50 = median(cancel.cancelMs)
  const c99 = quantile(cancel.cancelMs, 0.99)
  console.log(
    `| cancel → backend let go (${cancel.cancelMs.length} cancels; NFE slowed to ${CANCEL_DELAY_MS} ms) | ${fmt(c50)} | ${fmt(c99)} | one NFE step ${fmt(cancel.stepMs)} | ${(c50 / cancel.stepMs).toFixed(3)} / ${(c99 / cancel.stepMs).toFixed(3)} |`,
  )
  const w50 = median(hooks.webhookMs)
  const w99 = quantile(hooks.webhookMs, 0.99)
  const j50 = median(hooks.jsonMs)
  const j99 = quantile(hooks.jsonMs, 0.99)
  console.log(
    `| webhook completed received, ${CONCURRENCY} concurrent generations | ${fmt(w50)} | ${fmt(w99)} | JSON response ${fmt(j50)} (p99 ${fmt(j99)}) | ${(w50 / j50).toFixed(2)} / ${(w99 / j99).toFixed(2)} |`,
  )
}
