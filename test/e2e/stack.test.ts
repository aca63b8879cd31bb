/**
 * End to end: the worker under `wrangler dev` (workerd, offline) in front of real backend processes,
 * driven with plain fetch the way curl would (JSON, SSE parsed incrementally, disconnects).
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { decode } from 'fast-png'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomSecret, type Service, startWorker } from '../../scripts/local-stack.ts'
import { type SseEvent, sseEvents, streamEventTypes } from '../support/sse.ts'
import { postGeneration, type Stack, startStack } from '../support/stack.ts'

interface Generation {
  id: string
  status: 'running' | 'succeeded' | 'failed'
  cached: boolean
  seed: number
  integration: string
  progress: { step: number; nfe: number }
  images: { url: string; sha256: string; width: number }[]
}

let stack: Stack
const auth = () => ({ Authorization: `Bearer ${stack.apiKey}`, 'Content-Type': 'application/json' })
const post = (body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  postGeneration(stack, body, headers, signal)

/** Events of a stream up to and including the first of type `last`; then the client hangs up. */
async function readUntil(
  res: Response,
  controller: AbortController,
  last: string,
): Promise<SseEvent[]> {
  const seen: SseEvent[] = []
  for await (const event of sseEvents(res.body!)) {
    seen.push(event)
    if (event.event === last) break
  }
  controller.abort()
  return seen
}

async function pngPixels(url: string): Promise<Uint8Array> {
  const res = await fetch(url)
  expect(res.status).toBe(200)
  return decode(new Uint8Array(await res.arrayBuffer())).data as Uint8Array
}

/** The manifest of the worker's default model (the first `GET /v1/models` lists). */
async function defaultManifest(): Promise<{ image: { width: number } }> {
  const list = (await (await fetch(`${stack.workerUrl}/v1/models`)).json()) as {
    data: { manifest: { image: { width: number } } }[]
  }
  return list.data[0]!.manifest
}

beforeAll(async () => {
  // A slowed backend (per onnxruntime run) leaves time to disconnect mid-stream.
  stack = await startStack({
    backendArgs: ['--debug-run-delay-ms', '250'],
    env: { PIFLOW_SSE_KEEPALIVE_MS: '100' },
  })
})
afterAll(async () => {
  await stack?.stop()
})

describe('local stack end to end', () => {
  it('JSON generation returns a PNG that downloads without credentials', async () => {
    const res = await post({ prompt: 'red apple', seed: 100, size: 128 })
    expect(res.status, await res.clone().text()).toBe(200)
    expect(res.headers.get('RateLimit')).toMatch(/^"images";r=\d+;t=\d+$/)
    const gen = (await res.json()) as Generation
    expect(gen).toMatchObject({ status: 'succeeded', cached: false, integration: 'edge' })
    const image = await fetch(gen.images[0]!.url)
    expect(image.headers.get('Content-Type')).toBe('image/png')
    const png = decode(new Uint8Array(await image.arrayBuffer()))
    expect([png.width, png.height]).toEqual([128, 128])
  })

  it('SSE arrives incrementally: id, progress per NFE with preview PNGs, image, done', async () => {
    const res = await post({ prompt: 'smiling face', seed: 101 }, { Accept: 'text/event-stream' })
    expect(res.headers.get('Content-Type')).toContain('text/event-stream')
    const events: SseEvent[] = []
    const stats = { comments: 0 }
    for await (const event of sseEvents(res.body!, stats)) events.push(event)
    // The slowed backend leaves the stream idle for longer than the 100 ms keepalive interval.
    expect(stats.comments).toBeGreaterThan(0)
    expect(events.map((e) => e.event)).toEqual(streamEventTypes(4))
    for (const progress of events.slice(1, 5).map((e) => JSON.parse(e.data))) {
      const b64 = (progress.preview as string).replace(/^data:image\/png;base64,/, '')
      const preview = decode(Buffer.from(b64, 'base64'))
      // previews are of the latent: the default model's native size (whichever model is the default)
      const native = (await defaultManifest()).image.width
      expect([preview.width, preview.height]).toEqual([native, native])
    }
    const done = JSON.parse(events.at(-1)!.data) as Generation
    expect(done.id).toBe(JSON.parse(events[0]!.data).id)
  })

  it('a client that disconnects mid-stream loses nothing: GET returns the finished result', async () => {
    const controller = new AbortController()
    const res = await post(
      { prompt: 'sun with face', seed: 102 },
      { Accept: 'text/event-stream' },
      controller.signal,
    )
    const seen = await readUntil(res, controller, 'id')
    const id = JSON.parse(seen.at(-1)!.data).id as string
    expect(id).toMatch(/^gen_/)
    let gen: Generation | undefined
    for (let i = 0; i < 100; i++) {
      gen = (await (
        await fetch(`${stack.workerUrl}/v1/generations/${id}`, { headers: auth() })
      ).json()) as Generation
      if (gen.status !== 'running') break
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(gen).toMatchObject({ status: 'succeeded', progress: { step: 4, nfe: 4 } })
    expect(gen!.images).toHaveLength(1)
    expect((await fetch(gen!.images[0]!.url)).status).toBe(200)
  })

  it('a dropped stream resumes with Last-Event-ID and follows the generation to done', async () => {
    const controller = new AbortController()
    const res = await post(
      { prompt: 'moon with face', seed: 105 },
      { Accept: 'text/event-stream' },
      controller.signal,
    )
    const seen = await readUntil(res, controller, 'progress')
    const id = JSON.parse(seen[0]!.data).id as string
    const url = `${stack.workerUrl}/v1/generations/${id}`
    // Still running, so the rest has to come from following it.
    expect(((await (await fetch(url, { headers: auth() })).json()) as Generation).status).toBe(
      'running',
    )
    const resumed = await fetch(url, {
      headers: { ...auth(), Accept: 'text/event-stream', 'Last-Event-ID': seen.at(-1)!.id! },
    })
    expect(resumed.headers.get('Content-Type')).toContain('text/event-stream')
    const rest: SseEvent[] = []
    for await (const event of sseEvents(resumed.body!)) rest.push(event)
    const all = [...seen, ...rest]
    expect(all.map((e) => e.event)).toEqual(streamEventTypes(4))
    expect(all.map((e) => e.id)).toEqual(['0', '1', '2', '3', '4', '5', '6'])
    const done = JSON.parse(all.at(-1)!.data) as Generation
    expect(done).toMatchObject({ id, status: 'succeeded', progress: { step: 4, nfe: 4 } })
    expect((await fetch(done.images[0]!.url)).status).toBe(200)
  })

  it('seeded repeats are cache hits; the same image bytes come back', async () => {
    const body = { prompt: 'green apple', seed: 103 }
    const first = (await (await post(body)).json()) as Generation
    const started = performance.now()
    const second = (await (await post(body)).json()) as Generation
    const elapsed = performance.now() - started
    expect(second.cached).toBe(true)
    expect(second.images[0]!.sha256).toBe(first.images[0]!.sha256)
    // 4 NFE × 250 ms backend delay: a hit cannot have run the model (not a timing assertion on speed).
    expect(elapsed).toBeLessThan(1000)
  })

  it('Idempotency-Key replays the first result (unseeded, so only a replay matches)', async () => {
    const headers = { 'Idempotency-Key': randomSecret(12) }
    const first = await post({ prompt: 'blue heart' }, headers)
    const second = await post({ prompt: 'blue heart' }, headers)
    expect(second.headers.get('Idempotent-Replayed')).toBe('true')
    expect(await second.json()).toEqual(await first.json())
    expect((await post({ prompt: 'red heart' }, headers)).status).toBe(422)
  })
})

describe('backend integration and what backends see', () => {
  let worker: Service
  let proxy: ReturnType<typeof createServer>
  const seen: { path: string; headers: IncomingHttpHeaders }[] = []
  // When set, the proxy answers every request with a 500 (a broken backend).
  let failing = false

  beforeAll(async () => {
    // A recording proxy in front of the real backend shows exactly what the worker sends.
    const target = new URL(stack.backendUrl)
    proxy = createServer((req, res) => {
      seen.push({ path: req.url ?? '', headers: req.headers })
      if (failing) {
        req.resume()
        res.writeHead(500, { 'Content-Type': 'application/json' })
        res.end('{"error":{"code":"inference_failed","message":"injected"}}')
        return
      }
      const upstream = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          path: req.url,
          method: req.method,
          headers: req.headers,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers)
          up.pipe(res)
        },
      )
      req.pipe(upstream)
    })
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
    const { port } = proxy.address() as { port: number }
    worker = await startWorker({
      backends: [{ id: 'proxied', url: `http://127.0.0.1:${port}` }],
      backendSecret: stack.backendSecret,
      devApiKey: stack.apiKey,
      signingSecret: randomSecret(),
      vars: { PIFLOW_INTEGRATION: 'backend' },
    })
  })
  afterAll(async () => {
    await worker?.stop()
    proxy?.close()
  })

  it('integrating on the backend (/step) gives the same image as at the edge', async () => {
    const body = { prompt: 'red apple', seed: 104 }
    const edge = (await (await post(body)).json()) as Generation
    const res = await fetch(`${worker.url}/v1/generations`, {
      method: 'POST',
      headers: auth(),
      body: JSON.stringify(body),
    })
    const backend = (await res.json()) as Generation
    expect(backend.integration).toBe('backend')
    // Same seed, student and policy module, and /step integrates from the exact σ_src the edge does
    // (its metadata): the same PNG bytes (every size and model: models.test.ts).
    expect(backend.images[0]!.sha256).toBe(edge.images[0]!.sha256)
    expect(await pngPixels(backend.images[0]!.url)).toEqual(await pngPixels(edge.images[0]!.url))
    expect(seen.filter((s) => s.path.endsWith('/step'))).toHaveLength(4)
  })

  it('the caller’s Authorization never reaches a backend; the worker’s secret does', async () => {
    expect(seen.length).toBeGreaterThan(0)
    for (const request of seen) {
      expect(request.headers.authorization).toBeUndefined()
      expect(request.headers['x-piflow-backend-secret']).toBe(stack.backendSecret)
    }
  })
  const postTo = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${worker.url}/v1/generations`, {
      method: 'POST',
      headers: { ...auth(), ...headers },
      body: JSON.stringify(body),
    })

  it('a failing backend: typed 502, failed record, SSE error event, idempotency key released', async () => {
    failing = true
    const key = { 'Idempotency-Key': randomSecret(12) }
    const res = await postTo({ prompt: 'broken', seed: 1 }, key)
    expect(res.status).toBe(502)
    const body = (await res.json()) as {
      error: { code: string }
      requestId: string
      generationId: string
    }
    expect(body.error.code).toBe('backend_failed')
    expect(body.requestId).toMatch(/^req_/)
    const record = (await (
      await fetch(`${worker.url}/v1/generations/${body.generationId}`, { headers: auth() })
    ).json()) as { status: string; error: { code: string } }
    expect(record).toMatchObject({ status: 'failed', error: { code: 'backend_failed' } })

    const sse = await postTo({ prompt: 'broken', seed: 2 }, { Accept: 'text/event-stream' })
    const events: SseEvent[] = []
    for await (const event of sseEvents(sse.body!)) events.push(event)
    expect(events.map((e) => e.event)).toEqual(['id', 'error'])
    expect(JSON.parse(events[1]!.data).error.code).toBe('backend_failed')

    // A transient failure does not pin the key: the retry runs and succeeds.
    failing = false
    const retry = await postTo({ prompt: 'broken', seed: 1 }, key)
    expect(retry.status).toBe(200)
    expect(retry.headers.get('Idempotent-Replayed')).toBeNull()
  })

  it('the circuit opens after repeated failures (503 + Retry-After) and closes after a probe', async () => {
    failing = true
    for (let i = 0; i < 3; i++)
      expect((await postTo({ prompt: 'broken', seed: 10 + i })).status).toBe(502)
    const open = await postTo({ prompt: 'broken', seed: 20 })
    expect(open.status).toBe(503)
    expect(Number(open.headers.get('Retry-After'))).toBeGreaterThan(0)
    expect(((await open.json()) as { error: { code: string } }).error.code).toBe(
      'backends_unavailable',
    )
    failing = false
    // After the cool-down a /readyz probe lets traffic through again.
    await new Promise((r) => setTimeout(r, 10_500))
    expect((await postTo({ prompt: 'healed', seed: 21 })).status).toBe(200)
  })
})
