/**
 * Fault injection against the real local stack: two real backend processes, each behind a fault proxy,
 * and the worker under `wrangler dev` routed to the proxies. Every fault must end in either a correct
 * image (failover: forwards are pure functions, so retrying elsewhere is safe) or a clear JSON error —
 * never a partial or corrupt image, returned or cached — and a finished generation stays retrievable by
 * id, across client disconnects and worker restarts. Images made under faults are checked pixel by
 * pixel against a healthy reference (`size` 64 of the same seed: a nearest 2× upscale of the latent).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sseEvents } from '../support/sse.ts'
import {
  diffAgainstDouble,
  expectErrorBody,
  fetchImage,
  type Generation,
  getGeneration,
  postGeneration,
  postGenerationStream,
  waitForGeneration,
} from './support/api.ts'
import type { FaultMode } from './support/fault-proxy.ts'
import { checkReport, record } from './support/report.ts'
import { type Rig, startRig } from './support/rig.ts'

const SUITE = 'faults'
const PROMPT = 'a red apple'
/** The worker's per-attempt backend deadline in this suite (slow faults stall longer than this). */
const BACKEND_TIMEOUT_MS = 2000

let rig: Rig
/** seed → the 32×32 image a generation under faults returned (checked against the reference last) */
const madeUnderFaults = new Map<number, Generation>()
let nextSeed = 7_000

const generate = (seed: number, extra: Record<string, unknown> = {}) =>
  postGeneration(rig.workerUrl, rig.apiKey, { prompt: PROMPT, seed, size: 32, ...extra })

function resetProxies(): void {
  for (const proxy of rig.proxies) {
    proxy.mode = 'pass'
    proxy.faultBudget = undefined
    proxy.onModelRequest = undefined
    proxy.stats.faulted = 0
    proxy.stats.modelRequests = 0
  }
}

/** A failed generation must say why, clearly, and hold no images; GET must agree. */
async function expectCleanFailure(response: Awaited<ReturnType<typeof generate>>) {
  const code = expectErrorBody(response, [502, 503, 504])
  expect([
    'backend_failed',
    'backend_timeout',
    'backend_bad_output',
    'backends_unavailable',
    'backends_overloaded',
  ]).toContain(code)
  // Load shedding and open circuits tell the client when to come back.
  if (response.status === 503) expect(response.headers.get('retry-after')).toMatch(/^\d+$/)
  const generationId = (response.json as { generationId?: string }).generationId
  if (generationId) {
    const stored = await waitForGeneration(rig.workerUrl, rig.apiKey, generationId)
    expect(stored.status).toBe('failed')
    expect(stored.error?.code).toBe(code)
    expect(stored.images).toEqual([])
  }
  return code
}

beforeAll(async () => {
  rig = await startRig({
    backends: 2,
    // Each onnxruntime run takes ≥ 50 ms, so kills and disconnects land mid-generation.
    backendArgs: ['--debug-run-delay-ms', '50'],
    env: {
      PIFLOW_BACKEND_TIMEOUT_MS: String(BACKEND_TIMEOUT_MS),
      PIFLOW_RATE_LIMIT: '100000/60',
    },
  })
})

afterAll(async () => {
  await rig?.stop()
  checkReport(SUITE)
})

describe('faults with a healthy backend left: failover, correct images', () => {
  const modes: { mode: FaultMode; what: string }[] = [
    { mode: 'down', what: 'refuses/resets connections' },
    { mode: 'slow', what: `stalls ${BACKEND_TIMEOUT_MS + 1500} ms (past the 2 s timeout)` },
    { mode: 'status-500', what: 'answers 500' },
    { mode: 'overloaded', what: 'sheds load (503 queue_full + Retry-After)' },
    { mode: 'drop-mid', what: 'drops the connection halfway through the response body' },
    { mode: 'malformed', what: 'answers 200 with malformed safetensors' },
    { mode: 'wrong-shape', what: 'answers 200 with wrong tensor shapes' },
    { mode: 'nan', what: 'answers 200 with NaN in the tensors' },
    { mode: 'inf', what: 'answers 200 with ±Inf in the tensors' },
  ]
  for (const { mode, what } of modes) {
    it(`backend 0 ${what}`, async () => {
      resetProxies()
      const proxy = rig.proxies[0]!
      proxy.mode = mode
      proxy.slowMs = BACKEND_TIMEOUT_MS + 1500
      // Two faults: enough to exercise retry twice, below the breaker's threshold of three, so each
      // mode starts from a closed circuit without waiting out the breaker.
      proxy.faultBudget = 2
      const seeds = Array.from({ length: 6 }, () => nextSeed++)
      const responses = await Promise.all(seeds.map((seed) => generate(seed)))
      resetProxies()
      let survived = 0
      for (const [i, response] of responses.entries()) {
        const generation = response.json as Generation
        if (response.status === 200 && generation.status === 'succeeded') {
          await fetchImage(generation.images[0]!)
          madeUnderFaults.set(seeds[i]!, generation)
          survived++
        }
      }
      record(SUITE, {
        check: `backend 0 ${what}; backend 1 healthy (6 generations, 2 faults injected)`,
        tried: seeds.length,
        survived,
        outcome:
          'every generation succeeds on the healthy backend; image checked against reference',
      })
      expect(
        responses.map((r) => `${r.status} ${(r.json as Generation).status ?? r.text}`),
      ).toEqual(seeds.map(() => '200 succeeded'))
    })
  }
})

describe('faults with no healthy backend: a clear error, nothing cached', () => {
  const modes: { mode: FaultMode; what: string }[] = [
    { mode: 'down', what: 'refuse connections' },
    { mode: 'slow', what: 'stall past the timeout' },
    { mode: 'status-500', what: 'answer 500' },
    { mode: 'overloaded', what: 'shed load (503 queue_full)' },
    { mode: 'drop-mid', what: 'drop the connection mid-response' },
    { mode: 'malformed', what: 'answer malformed safetensors' },
    { mode: 'wrong-shape', what: 'answer wrong shapes' },
    { mode: 'nan', what: 'answer NaN tensors' },
    { mode: 'inf', what: 'answer ±Inf tensors' },
  ]
  for (const { mode, what } of modes) {
    it(`both backends ${what}`, async () => {
      resetProxies()
      for (const proxy of rig.proxies) {
        proxy.mode = mode
        proxy.slowMs = BACKEND_TIMEOUT_MS + 1500
        // One fault each: the first forward fails everywhere, no circuit opens.
        proxy.faultBudget = 1
      }
      const seed = nextSeed++
      const response = await generate(seed)
      const faulted = rig.proxies.map((p) => p.stats.faulted)
      resetProxies()
      let survived = 0
      let code = 'none'
      try {
        code = await expectCleanFailure(response)
        // The failure was not cached: the same seeded request now runs and succeeds.
        const again = await generate(seed)
        expect(again.status, again.text).toBe(200)
        expect((again.json as Generation).cached).toBe(false)
        madeUnderFaults.set(seed, again.json as Generation)
        survived = 1
      } finally {
        record(SUITE, {
          check: `both backends ${what} (first forward)`,
          tried: 1,
          survived,
          outcome: `${response.status} ${code}; GET agrees; retry not served from cache`,
        })
      }
      expect(faulted).toEqual([1, 1])
    })
  }

  it('repeated failures open the circuit: fast 503 with Retry-After, then recovery', async () => {
    resetProxies()
    for (const proxy of rig.proxies) proxy.mode = 'down'
    const statuses: number[] = []
    let last: Awaited<ReturnType<typeof generate>> | undefined
    for (let i = 0; i < 4; i++) {
      last = await generate(nextSeed++)
      statuses.push(last.status)
      await expectCleanFailure(last)
    }
    resetProxies()
    const open = last!
    const ok =
      expectErrorBody(open, [503]) === 'backends_unavailable' && open.headers.has('retry-after')
    record(SUITE, {
      check: 'both backends down, 4 generations in a row (circuit breaker)',
      tried: 4,
      survived: statuses.filter((s) => s >= 502 && s <= 504).length,
      outcome: 'clear 502s, then 503 backends_unavailable with Retry-After once circuits open',
    })
    expect(ok).toBe(true)
  })
})

describe('process and connection failures', () => {
  it('a backend process killed (SIGKILL) mid-generation: work moves to the other', async () => {
    // The breaker test above left both circuits open; a restart gives the worker a fresh isolate.
    await rig.restartWorker()
    resetProxies()
    let killed = false
    rig.proxies[0]!.onModelRequest = (count) => {
      // Third forward through backend 0: generations are mid-flight when its process dies.
      if (count === 3 && !killed) {
        killed = true
        setTimeout(() => rig.killBackend(0), 20)
      }
    }
    const seeds = Array.from({ length: 6 }, () => nextSeed++)
    const responses = await Promise.all(seeds.map((seed) => generate(seed)))
    resetProxies()
    const survived = responses.filter(
      (r) => r.status === 200 && (r.json as Generation).status === 'succeeded',
    ).length
    for (const [i, r] of responses.entries()) {
      if (r.status === 200) madeUnderFaults.set(seeds[i]!, r.json as Generation)
    }
    record(SUITE, {
      check: 'backend 0 SIGKILLed during 6 concurrent generations',
      tried: seeds.length,
      survived,
      outcome: 'all succeed on backend 1',
    })
    expect(killed).toBe(true)
    expect(responses.map((r) => r.status)).toEqual(seeds.map(() => 200))
    await rig.replaceBackend(0)
  })

  it('a client that disconnects mid-stream: the result is still retrievable by id', async () => {
    resetProxies()
    const tried = 3
    let survived = 0
    for (let i = 0; i < tried; i++) {
      const seed = nextSeed++
      const controller = new AbortController()
      const response = await postGenerationStream(
        rig.workerUrl,
        rig.apiKey,
        { prompt: PROMPT, seed, size: 32 },
        { signal: controller.signal },
      )
      expect(response.status).toBe(200)
      let id: string | undefined
      try {
        for await (const event of sseEvents(response.body!)) {
          if (event.event === 'id') id = (JSON.parse(event.data) as { id: string }).id
          // Hang up after the first progress event (i = 0) or right after the id (others).
          if (id && (i > 0 || event.event === 'progress')) break
        }
      } finally {
        controller.abort()
      }
      expect(id).toMatch(/^gen_/)
      const generation = await waitForGeneration(rig.workerUrl, rig.apiKey, id!)
      expect(generation.status).toBe('succeeded')
      expect(generation.images).toHaveLength(1)
      await fetchImage(generation.images[0]!)
      madeUnderFaults.set(seed, generation)
      survived++
    }
    record(SUITE, {
      check: 'client disconnects mid-stream (SSE), then GET /v1/generations/:id',
      tried,
      survived,
      outcome: 'generation finished, retrievable, image valid',
    })
  })

  it('the worker restarted between a generation and its retrieval loses nothing', async () => {
    resetProxies()
    const seed = nextSeed++
    const first = await generate(seed)
    expect(first.status, first.text).toBe(200)
    const made = first.json as Generation
    await rig.restartWorker()
    const checks: boolean[] = []
    const stored = await getGeneration(rig.workerUrl, rig.apiKey, made.id)
    checks.push(stored.status === 200 && (stored.json as Generation).status === 'succeeded')
    const image = (stored.json as Generation).images?.[0]
    checks.push(image?.sha256 === made.images[0]!.sha256)
    // The URL signed before the restart still downloads the same bytes.
    await fetchImage(made.images[0]!)
    checks.push(true)
    // The cache survived too: the same seeded request is a hit with the same bytes.
    const again = await generate(seed)
    const hit = again.json as Generation
    checks.push(
      again.status === 200 && hit.cached && hit.images[0]?.sha256 === made.images[0]!.sha256,
    )
    madeUnderFaults.set(seed, made)
    record(SUITE, {
      check: 'worker (wrangler dev, persisted state) restarted between POST and GET',
      tried: checks.length,
      survived: checks.filter(Boolean).length,
      outcome: 'record, signed image URL and cache entry all survive',
    })
    expect(checks).toEqual([true, true, true, true])
  })
})

describe('nothing corrupt was returned or cached', () => {
  it('every image made under faults matches a healthy reference, and so does its cached copy', async () => {
    resetProxies()
    let survived = 0
    let worst = 0
    const queue = [...madeUnderFaults]
    const verifyOne = async ([seed, generation]: [number, Generation]) => {
      const image = await fetchImage(generation.images[0]!)
      const reference = await generate(seed, { size: 64 })
      expect(reference.status, reference.text).toBe(200)
      const diff = diffAgainstDouble(
        image,
        await fetchImage((reference.json as Generation).images[0]!),
      )
      const cached = await generate(seed)
      const ok =
        diff <= 2 &&
        cached.status === 200 &&
        (cached.json as Generation).cached &&
        (cached.json as Generation).images[0]!.sha256 === generation.images[0]!.sha256
      worst = Math.max(worst, diff)
      if (ok) survived++
    }
    // Four at a time: the backends batch them, the check takes seconds instead of tens of seconds.
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await verifyOne(next)
      }),
    )
    record(SUITE, {
      check: 'images made under faults vs a healthy reference; their cache entries',
      tried: madeUnderFaults.size,
      survived,
      outcome: 'pixels within 2/255 of the reference; cache hit returns the same bytes',
    })
    expect(survived).toBe(madeUnderFaults.size)
    expect(worst).toBeLessThanOrEqual(2)
  })
})

describe('secrets never reach a log', () => {
  it('worker and backend logs of this suite (faults, restarts, kills) hold no secret', () => {
    const secrets = [rig.apiKey, rig.backendSecret, rig.signingSecret]
    const parts = secrets.flatMap((s) => [s, s.slice(-20)])
    const leaks = parts.filter((p) => rig.logs.some((line) => line.includes(p)))
    record(SUITE, {
      check: 'captured worker + backend log lines scanned for 3 secrets and their 20-char tails',
      tried: parts.length,
      survived: parts.length - leaks.length,
      outcome: 'none found',
    })
    expect(rig.logs.length).toBeGreaterThan(20)
    expect(leaks).toEqual([])
  })
})
