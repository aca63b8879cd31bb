/**
 * What happens around a generation when processes die, keys are revoked, uploads are cut off or
 * backends fail: the stack must end every state it started (no record or Idempotency-Key stuck
 * "running"), tell clients the truth (JSON and SSE agree, Retry-After says the real wait), charge no
 * quota for its own failures, and log a client's hang-up as what it is.
 */

import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient } from '../../sdk/src/index.ts'
import { LEASE_MS } from '../../worker/src/lease.ts'
import { sseEvents } from '../support/sse.ts'
import {
  call,
  type Generation,
  getGeneration,
  postGeneration,
  postGenerationStream,
} from './support/api.ts'
import { checkReport, record } from './support/report.ts'
import { type Rig, startRig } from './support/rig.ts'

const SUITE = 'lifecycle'
/** Each onnxruntime run of the backend takes this long, so a generation is mid-flight for seconds. */
const RUN_DELAY_MS = 1500
/** The bound the issue sets on noticing a dead job's generation for the default model. */
const ABANDON_BOUND_MS = 60_000
/** The backend's per-request deadline in this suite (a body that has not arrived by then is refused). */
const BACKEND_REQUEST_TIMEOUT_MS = 8000
/** The worker's limit on reading a request body (worker/src/middleware/json-body.ts). */
const WORKER_BODY_TIMEOUT_MS = 10_000

let rig: Rig

beforeAll(async () => {
  rig = await startRig({
    backends: 1,
    backendArgs: [
      '--debug-run-delay-ms',
      String(RUN_DELAY_MS),
      '--request-timeout-ms',
      String(BACKEND_REQUEST_TIMEOUT_MS),
    ],
    // A long window: the quota checks below must not see it roll over.
    env: { PIFLOW_RATE_LIMIT: '100000/3600' },
  })
})

afterAll(async () => {
  await rig?.stop()
  checkReport(SUITE)
})

/** Starts a streamed generation and reads until its first progress event; returns its id. */
async function startStreamed(body: unknown, idempotencyKey: string): Promise<string> {
  const response = await postGenerationStream(rig.workerUrl, rig.apiKey, body, {
    headers: { 'Idempotency-Key': idempotencyKey },
  })
  expect(response.status).toBe(200)
  let id: string | undefined
  // The stream is left open: the worker dies under it.
  for await (const event of sseEvents(response.body!)) {
    if (event.event === 'id') id = (JSON.parse(event.data) as { id: string }).id
    if (event.event === 'progress') break
  }
  expect(id).toMatch(/^gen_/)
  return id!
}

/** The events of `GET /v1/generations/:id` as a stream, read to its end. */
async function streamOf(id: string): Promise<{ event: string; data: string }[]> {
  const response = await fetch(`${rig.workerUrl}/v1/generations/${id}`, {
    headers: { Authorization: `Bearer ${rig.apiKey}`, Accept: 'text/event-stream' },
    signal: AbortSignal.timeout(ABANDON_BOUND_MS),
  })
  const events: { event: string; data: string }[] = []
  for await (const event of sseEvents(response.body!)) events.push(event)
  return events
}

describe('a worker killed mid-generation leaves nothing stuck', () => {
  it('SIGKILL of wrangler + workerd during a streamed, idempotent generation, then a restart', async () => {
    const key = `reliability-${crypto.randomUUID()}`
    const body = { prompt: 'a red apple', seed: 4242, size: 32 }
    const id = await startStreamed(body, key)
    await rig.killWorker()
    const killedAt = Date.now()
    await rig.restartWorker()

    // A retry right away: refused while the dead job's lease runs, and told how long that is.
    const conflict = await postGeneration(rig.workerUrl, rig.apiKey, body, {
      'Idempotency-Key': key,
    })
    const retryAfter = Number(conflict.headers.get('retry-after'))
    const remainingLease = Math.ceil((killedAt + LEASE_MS - Date.now()) / 1000)
    const honestConflict =
      conflict.status === 409
        ? retryAfter >= Math.min(2, remainingLease) && retryAfter <= LEASE_MS / 1000
        : conflict.status === 200 // the lease had already run out: the retry ran
    // The SDK's own retries (same Idempotency-Key, honouring Retry-After) get a real image.
    const client = createClient({ baseUrl: rig.workerUrl, apiKey: rig.apiKey })
    const retried = await client
      .generate(body, { idempotencyKey: key })
      .then((result) => result.data)
      .catch((error: Error) => error)
    const retryRan =
      !(retried instanceof Error) && retried.status === 'succeeded' && retried.id !== id

    // GET and the SSE resume agree: failed, generation_abandoned, well within the bound.
    const stored = await getGeneration(rig.workerUrl, rig.apiKey, id)
    const detectedMs = Date.now() - killedAt
    const generation = stored.json as Generation
    const jsonAbandoned =
      generation.status === 'failed' &&
      generation.error?.code === 'generation_abandoned' &&
      detectedMs <= ABANDON_BOUND_MS
    const events = await streamOf(id)
    const last = events.at(-1)
    const sseAbandoned =
      last?.event === 'error' &&
      (JSON.parse(last.data) as { error: { code: string } }).error.code === 'generation_abandoned'
    const checks = { honestConflict, retryRan, jsonAbandoned, sseAbandoned }
    record(SUITE, {
      check:
        'worker SIGKILLed after the first progress event of an SSE generation with an Idempotency-Key; restarted on the same state',
      tried: 4,
      survived: Object.values(checks).filter(Boolean).length,
      outcome: `a retry is told the lease's real remaining time (409 + Retry-After ≤ ${LEASE_MS / 1000} s) and the SDK's retry then runs it; GET says failed generation_abandoned and the SSE resume ends with that error, within ${ABANDON_BOUND_MS / 1000} s`,
    })
    expect(
      { ...checks, conflict: conflict.status, retryAfter, detectedMs, retried: String(retried) },
      conflict.text,
    ).toMatchObject({
      honestConflict: true,
      retryRan: true,
      jsonAbandoned: true,
      sseAbandoned: true,
    })
  })
})

/**
 * A POST whose body stops halfway: the headers promise `declared` bytes, `sent` of them go out, then
 * the client either hangs up (`destroy`) or waits for an answer. Resolves with the status line (or
 * `''` when the server closed without one) and how long it took.
 */
function partialUpload(
  url: string,
  headers: Record<string, string>,
  declared: number,
  sent: number,
  then: 'destroy' | 'wait',
): Promise<{ status: string; ms: number }> {
  const target = new URL(url)
  return new Promise((resolve) => {
    const started = Date.now()
    let answer = ''
    const socket = connect(Number(target.port), target.hostname)
    const done = () =>
      resolve({ status: /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? '', ms: Date.now() - started })
    socket.setTimeout(60_000, () => socket.destroy())
    socket.on('data', (chunk) => {
      answer += chunk.toString()
      socket.end()
    })
    socket.on('close', done)
    socket.on('error', () => undefined)
    socket.on('connect', () => {
      const head = Object.entries({
        ...headers,
        'Content-Length': String(declared),
        Connection: 'close',
      })
        .map(([k, v]) => `${k}: ${v}`)
        .join('\r\n')
      socket.write(`POST ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\n${head}\r\n\r\n`)
      socket.write(Buffer.alloc(sent, 0x20))
      if (then === 'destroy') setTimeout(() => socket.destroy(), 300)
    })
  })
}

describe('uploads cut off or stalled', () => {
  it('worker and backend: a client hang-up is no 500, a stalled body is a 408', async () => {
    const workerPost = `${rig.workerUrl}/v1/generations`
    const workerHeaders = {
      Authorization: `Bearer ${rig.apiKey}`,
      'Content-Type': 'application/json',
    }
    const backendPost = `${rig.backendUrls[0]}/v1/models/piflow-emoji/forward`
    const backendHeaders = {
      'X-Piflow-Backend-Secret': rig.backendSecret,
      'Content-Type': 'application/octet-stream',
    }
    const logsBefore = rig.logs.length
    for (let i = 0; i < 3; i++) {
      await partialUpload(workerPost, workerHeaders, 4000, 1000, 'destroy')
      await partialUpload(backendPost, backendHeaders, 400_000, 100_000, 'destroy')
    }
    const [workerStall, backendStall] = await Promise.all([
      partialUpload(workerPost, workerHeaders, 4000, 1000, 'wait'),
      partialUpload(backendPost, backendHeaders, 400_000, 100_000, 'wait'),
    ])
    // Time for the servers to log what they make of the hang-ups.
    await new Promise((r) => setTimeout(r, 1000))
    const logged = rig.logs.slice(logsBefore)
    const alarming = logged.filter((line) =>
      /unhandled|internal error|internal_error|\s+at /.test(line),
    )
    const checks = {
      workerStall408:
        workerStall.status === '408' && workerStall.ms < WORKER_BODY_TIMEOUT_MS + 5000,
      backendStall408:
        backendStall.status === '408' && backendStall.ms < BACKEND_REQUEST_TIMEOUT_MS + 5000,
      noAlarmingLogLines: alarming.length === 0,
    }
    record(SUITE, {
      check:
        '3 uploads cut off halfway (client hangs up) and 1 stalled halfway, each to the worker and to a backend',
      tried: 3,
      survived: Object.values(checks).filter(Boolean).length,
      outcome: `no unhandled 500 or stack logged for a hang-up; a stalled body gets 408 request_timeout (worker after ${WORKER_BODY_TIMEOUT_MS / 1000} s, backend at its request deadline)`,
    })
    expect({ ...checks, workerStall, backendStall, alarming: alarming.slice(0, 5) }).toMatchObject({
      workerStall408: true,
      backendStall408: true,
      noAlarmingLogLines: true,
    })
  })
})

/** `r` of a `RateLimit: "images";r=<remaining>;t=<seconds>` header. */
const remainingOf = (headers: Headers) =>
  Number(/r=(\d+)/.exec(headers.get('ratelimit') ?? '')?.[1])

describe('backend outages and readiness probes', () => {
  it('a generation that fails for backend reasons costs no quota', async () => {
    const proxy = rig.proxies[0]!
    const remaining: number[] = []
    const statuses: number[] = []
    // Two outages (below the breaker's threshold of three), then two generations that succeed.
    for (const mode of ['down', 'down', 'pass', 'pass'] as const) {
      proxy.mode = mode
      const response = await postGeneration(rig.workerUrl, rig.apiKey, {
        prompt: 'a kiwi',
        size: 32,
      })
      statuses.push(response.status)
      remaining.push(remainingOf(response.headers))
    }
    proxy.mode = 'pass'
    const [first] = remaining as [number]
    // Each request shows what was left after taking its unit; a refunded unit is back for the next.
    const expected = [first, first, first, first - 1]
    record(SUITE, {
      check:
        'quota (RateLimit r=) across 2 generations failing with the backend down, then 2 that succeed',
      tried: 4,
      survived: remaining.filter((r, i) => r === expected[i]).length,
      outcome:
        'the failed generations (502 backend_failed) are refunded; only the successes are charged',
    })
    expect({ statuses, remaining }).toEqual({ statuses: [502, 502, 200, 200], remaining: expected })
  })

  it('/readyz floods do not become backend probes', async () => {
    const proxy = rig.proxies[0]!
    proxy.stats.probes = 0
    const calls = 40
    const answers = await Promise.all(
      Array.from({ length: calls / 2 }, () => call(`${rig.workerUrl}/readyz`)),
    )
    for (let i = 0; i < calls / 2; i++) answers.push(await call(`${rig.workerUrl}/readyz`))
    const probes = proxy.stats.probes
    record(SUITE, {
      check: `${calls} unauthenticated GET /readyz (half concurrent, half in a row)`,
      tried: calls,
      survived: answers.filter((a) => a.status === 200).length,
      outcome:
        '200 each, from one backend probe per 5 s per isolate (concurrent calls share it): public for load balancers, never a load amplifier',
    })
    expect(answers.every((a) => a.status === 200)).toBe(true)
    expect(probes).toBeLessThanOrEqual(2)
  })
})

/** Reads `response`'s events until the stream ends; resolves with them and when it ended. */
async function readToEnd(
  response: Response,
): Promise<{ events: { event: string; data: string }[]; endedAt: number }> {
  const events: { event: string; data: string }[] = []
  for await (const event of sseEvents(response.body!)) events.push(event)
  return { events, endedAt: Date.now() }
}

const endsRevoked = (events: { event: string; data: string }[]) => {
  const last = events.at(-1)
  return (
    last?.event === 'error' &&
    (JSON.parse(last.data) as { error: { code: string } }).error.code === 'key_revoked'
  )
}

// Last: it revokes the suite's key.
describe('revoking a key (DELETE /v1/keys/:id)', () => {
  it('is immediate on the isolate that handles it: requests refused, open streams end', async () => {
    const keyId = /^pf_([a-z0-9]+)_/.exec(rig.apiKey)![1]!
    const auth = { Authorization: `Bearer ${rig.apiKey}` }
    const made = await postGeneration(rig.workerUrl, rig.apiKey, { prompt: 'a pear', seed: 77 })
    expect(made.status, made.text).toBe(200)
    const image = (made.json as Generation).images[0]!
    // Another key's id: not this key's to revoke.
    const other = await call(`${rig.workerUrl}/v1/keys/someoneelse`, {
      method: 'DELETE',
      headers: auth,
    })
    // A live generation's stream (the POST) and a follower of it (GET as SSE).
    const live = await postGenerationStream(rig.workerUrl, rig.apiKey, {
      prompt: 'a plum',
      seed: 78,
      size: 32,
    })
    const reader = sseEvents(live.body!)
    const first = (await reader.next()).value as { event: string; data: string }
    const { id } = JSON.parse(first.data) as { id: string }
    const follower = await fetch(`${rig.workerUrl}/v1/generations/${id}`, {
      headers: { ...auth, Accept: 'text/event-stream' },
    })
    const liveRest = (async () => {
      const events = [first]
      for await (const event of reader) events.push(event)
      return { events, endedAt: Date.now() }
    })()
    const followed = readToEnd(follower)

    const revoke = await call(`${rig.workerUrl}/v1/keys/${keyId}`, {
      method: 'DELETE',
      headers: auth,
    })
    const revokedAt = Date.now()
    const after = await getGeneration(rig.workerUrl, rig.apiKey, id)
    const [liveEnd, followEnd] = await Promise.all([liveRest, followed])
    // Signed URLs are bearer capabilities until they expire (documented): the image still loads.
    const imageStatus = (await fetch(image.url)).status
    const checks = {
      otherForbidden: other.status === 403,
      revoked: revoke.status === 200 && (revoke.json as { revoked?: boolean }).revoked === true,
      refusedAtOnce: after.status === 401,
      liveStreamEnded: endsRevoked(liveEnd.events) && liveEnd.endedAt - revokedAt < 2000,
      followerEnded: endsRevoked(followEnd.events) && followEnd.endedAt - revokedAt < 2000,
      signedUrlStillServes: imageStatus === 200,
    }
    record(SUITE, {
      check:
        'DELETE /v1/keys/<own id> during a live SSE generation and a follower of it; DELETE of another id; a signed URL made before',
      tried: Object.keys(checks).length,
      survived: Object.values(checks).filter(Boolean).length,
      outcome:
        "403 for another key's id; 200 revoked; the key's next request 401 and both streams end with error key_revoked within 2 s; signed image URLs stay valid until they expire (documented)",
    })
    expect(checks).toEqual({
      otherForbidden: true,
      revoked: true,
      refusedAtOnce: true,
      liveStreamEnded: true,
      followerEnded: true,
      signedUrlStillServes: true,
    })
  })
})
