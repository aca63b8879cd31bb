/**
 * End to end through the edge for models generated whole on the PyTorch backend: the worker under
 * `wrangler dev` (workerd) with PIFLOW_BACKENDS = the Node ONNX backend (piflow-emoji) + a real
 * `python -m piflow_torch.server` process serving the tiny fixture bases (piflux-tiny, piqwen-tiny:
 * real diffusers text encoders, VAE and transformer on the CPU). Driven the way curl would (JSON, SSE)
 * and through `@piflow/sdk`'s createClient unchanged. The worker reaches the torch server through a
 * stream fault proxy (pass-through unless a test sets a fault); the last test kills the torch server
 * mid-generation. Needs the PyTorch environment of `scripts/setup.sh --test` (or PIFLOW_TORCH_PYTHON).
 */
import { decode } from 'fast-png'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient } from '../../sdk/src/index.ts'
import { type NdjsonFaultProxy, startNdjsonFaultProxy } from '../support/ndjson-fault-proxy.ts'
import { type SseEvent, sseEvents, streamEventTypes } from '../support/sse.ts'
import {
  postGeneration,
  startTorchStack,
  type TorchStack,
  torchSkipReason,
} from '../support/stack.ts'

interface Generation {
  id: string
  status: 'running' | 'succeeded' | 'failed'
  cached: boolean
  seed: number
  size: number
  guidance: number
  integration: string
  backends: string[]
  progress: { step: number; nfe: number }
  images: { url: string; sha256: string; width: number; height: number; data?: string }[]
  error: { code: string; message: string } | null
}

const TORCH_MODELS = ['piflux-tiny', 'piqwen-tiny']

let proxy: NdjsonFaultProxy | undefined
let stack: TorchStack
/** The torch server itself (the worker reaches it through the proxy). */
const torch = () => stack.torch
const faultProxy = () => proxy!
const auth = () => ({ Authorization: `Bearer ${stack.apiKey}`, 'Content-Type': 'application/json' })
const post = (body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  postGeneration(stack, body, headers, signal)
const sse = { Accept: 'text/event-stream' }

/** Remaining units of the key's quota window, from the `RateLimit` header. */
const remaining = (res: Response) =>
  Number(/;r=(\d+);/.exec(res.headers.get('RateLimit') ?? '')?.[1])

async function png(url: string): Promise<Uint8Array> {
  const res = await fetch(url)
  expect(res.status).toBe(200)
  expect(res.headers.get('Content-Type')).toBe('image/png')
  return new Uint8Array(await res.arrayBuffer())
}

/** The images the torch backend returns when called directly (no edge), by index. */
async function generateDirect(model: string, body: Record<string, unknown>): Promise<Uint8Array[]> {
  const res = await fetch(`${torch().url}/v1/models/${model}/generate`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Piflow-Backend-Secret': stack.backendSecret },
    body: JSON.stringify(body),
  })
  expect(res.status).toBe(200)
  const events = (await res.text())
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as { type: string; data?: string })
  expect(events.at(-1)!.type).toBe('done')
  return events
    .filter((e) => e.type === 'image')
    .map((e) => new Uint8Array(Buffer.from(e.data!, 'base64')))
}

async function readAll(res: Response): Promise<SseEvent[]> {
  const events: SseEvent[] = []
  for await (const event of sseEvents(res.body!)) events.push(event)
  return events
}

const skip = torchSkipReason()

if (skip) {
  describe('edge → PyTorch backend end to end', () => {
    it.skip(skip, () => {})
  })
} else {
  beforeAll(async () => {
    stack = await startTorchStack({
      models: TORCH_MODELS,
      // Keeps a generation running long enough to kill the server in the middle of one.
      torchArgs: ['--debug-step-delay-ms', '150'],
      routeThrough: async (url) => {
        proxy = await startNdjsonFaultProxy(url)
        return proxy.url
      },
      env: {
        PIFLOW_SSE_KEEPALIVE_MS: '100',
        // The longest silence a generation stream may have (the stall fault below waits it out).
        PIFLOW_BACKEND_TIMEOUT_MS: '3000',
      },
    })
  }, 300_000)
  afterAll(async () => {
    await Promise.all([stack?.stop(), proxy?.close()])
  })

  describe('edge → PyTorch backend end to end', () => {
    it('GET /v1/models lists the backend models with what their backend declares', async () => {
      const res = await fetch(`${stack.workerUrl}/v1/models`)
      expect(res.status).toBe(200)
      const list = (await res.json()) as {
        data: { id: string; manifest: Record<string, unknown>; files: unknown[] }[]
      }
      expect(list.data.map((m) => m.id)).toEqual(['piflow-emoji', ...TORCH_MODELS])
      const flux = list.data[1]!
      expect(flux.files).toEqual([])
      expect(flux.manifest).toMatchObject({
        capabilities: ['generate'],
        image: { defaultWidth: 64, multipleOf: 16 },
        guidance: { default: 3.5 },
        nfeOptions: [4],
      })
      expect(list.data[2]!.manifest).toMatchObject({ guidance: { default: null } })
    })

    it('JSON: a seed gives the same PNG bytes as the backend called directly', async () => {
      const res = await post({ model: 'piflux-tiny', prompt: 'a red apple', seed: 7, size: 64 })
      expect(res.status, await res.clone().text()).toBe(200)
      const gen = (await res.json()) as Generation
      expect(gen).toMatchObject({
        status: 'succeeded',
        cached: false,
        integration: 'backend',
        backends: ['torch'],
        size: 64,
        guidance: 3.5,
        progress: { step: 4, nfe: 4 },
      })
      const bytes = await png(gen.images[0]!.url)
      const image = decode(bytes)
      expect([image.width, image.height]).toEqual([64, 64])
      const [direct] = await generateDirect('piflux-tiny', {
        prompt: 'a red apple',
        seed: 7,
        width: 64,
        height: 64,
        guidance: 3.5,
      })
      expect(Buffer.from(bytes).equals(Buffer.from(direct!))).toBe(true)
    })

    it('SSE: id, one progress per NFE with the backend preview, images in order, done; resumable', async () => {
      const res = await post(
        { model: 'piflux-tiny', prompt: 'a blue boat', seed: 21, size: 48, count: 2 },
        sse,
      )
      expect(res.headers.get('Content-Type')).toContain('text/event-stream')
      const events = await readAll(res)
      expect(events.map((e) => e.event)).toEqual(streamEventTypes(4, 2))
      expect(events.map((e) => e.id)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7'])
      const progress = events.slice(1, 5).map((e) => JSON.parse(e.data))
      for (const [k, p] of progress.entries()) {
        expect(p).toMatchObject({ step: k + 1, nfe: 4, previewKind: 'state' })
        expect(p.preview).toMatch(/^data:image\/png;base64,/)
      }
      // σ follows the backend's declared schedule down to 0.
      const sigmas = progress.map((p) => p.sigma as number)
      expect(sigmas.at(-1)).toBe(0)
      expect([...sigmas].sort((a, b) => b - a)).toEqual(sigmas)
      const images = events.slice(5, 7).map((e) => JSON.parse(e.data))
      expect(images.map((i) => [i.index, i.seed, i.width])).toEqual([
        [0, 21, 48],
        [1, 22, 48],
      ])
      const id = JSON.parse(events[0]!.data).id as string
      // Both images are the backend's own for this request, byte for byte.
      const direct = await generateDirect('piflux-tiny', {
        prompt: 'a blue boat',
        seed: 21,
        count: 2,
        width: 48,
        height: 48,
        guidance: 3.5,
      })
      for (const [i, image] of images.entries()) {
        expect(Buffer.from(await png(image.url)).equals(Buffer.from(direct[i]!))).toBe(true)
      }

      const resumed = await fetch(`${stack.workerUrl}/v1/generations/${id}`, {
        headers: { ...auth(), ...sse, 'Last-Event-ID': '2' },
      })
      const rest = await readAll(resumed)
      expect(rest.map((e) => e.id)).toEqual(['3', '4', '5', '6', '7'])
      expect(JSON.parse(rest.at(-1)!.data)).toMatchObject({ id, status: 'succeeded' })
    })

    it('a client that drops the stream leaves the generation running; GET has the result', async () => {
      const controller = new AbortController()
      const res = await post(
        { model: 'piflux-tiny', prompt: 'left behind', seed: 61 },
        sse,
        controller.signal,
      )
      let id = ''
      for await (const event of sseEvents(res.body!)) {
        if (event.event === 'id') id = JSON.parse(event.data).id
        if (event.event === 'progress') break
      }
      controller.abort()
      const url = `${stack.workerUrl}/v1/generations/${id}`
      await expect
        .poll(
          async () => ((await (await fetch(url, { headers: auth() })).json()) as Generation).status,
          {
            timeout: 30_000,
          },
        )
        .toBe('succeeded')
      const done = (await (await fetch(url, { headers: auth() })).json()) as Generation
      expect(done.images).toHaveLength(1)
      await png(done.images[0]!.url)
    })

    it('Idempotency-Key replays and a repeated seeded request is a cache hit', async () => {
      const body = { model: 'piflux-tiny', prompt: 'green hills', seed: 33 }
      const first = await post(body, { 'Idempotency-Key': 'torch-idem-1' })
      expect(first.status).toBe(200)
      const gen = (await first.json()) as Generation
      const replay = await post(body, { 'Idempotency-Key': 'torch-idem-1' })
      expect(replay.headers.get('Idempotent-Replayed')).toBe('true')
      expect(((await replay.json()) as Generation).id).toBe(gen.id)
      const again = (await (await post(body)).json()) as Generation
      expect(again).toMatchObject({ cached: true, status: 'succeeded' })
      expect(again.images[0]!.sha256).toBe(gen.images[0]!.sha256)
    })

    it('bad options from what the backend declares: 422 before any quota is taken', async () => {
      const before = await post({ model: 'piflux-tiny', prompt: 'green hills', seed: 33 })
      expect(before.status).toBe(200)
      const bad: [Record<string, unknown>, string][] = [
        [{ model: 'piflux-tiny', size: 40 }, 'size'], // not a multiple of 16
        [{ model: 'piflux-tiny', size: 1024 }, 'size'], // over maxSide 512
        [{ model: 'piflux-tiny', nfe: 8 }, 'nfe'],
        [{ model: 'piflux-tiny', guidance: 12 }, 'guidance'],
        [{ model: 'piflux-tiny', count: 5 }, 'count'],
        [{ model: 'piqwen-tiny', guidance: 3 }, 'guidance'], // a model without guidance
        [{ model: 'pi-unknown' }, 'model'],
      ]
      for (const [fields, path] of bad) {
        const res = await post({ prompt: 'a cat', ...fields })
        expect(res.status, JSON.stringify(fields)).toBe(422)
        const body = (await res.json()) as { error: { code: string; fields: { path: string }[] } }
        expect(body.error.fields.map((f) => f.path)).toContain(path)
      }
      const after = await post({ model: 'piflux-tiny', prompt: 'green hills', seed: 33 })
      // The cache hit after costs one unit, the 422s none.
      expect(remaining(after)).toBe(remaining(before) - 1)
    })

    it('@piflow/sdk createClient().generate works unchanged (pi-Qwen fixture, no guidance)', async () => {
      const client = createClient({ baseUrl: stack.workerUrl, apiKey: stack.apiKey })
      const { data, backend } = await client.generate({
        model: 'piqwen-tiny',
        prompt: 'a small house',
        nfe: 4,
      })
      expect(backend).toBe('remote')
      expect(data).toMatchObject({ status: 'succeeded', path: 'remote', integration: 'backend' })
      const bytes = await png(data.images[0]!.url!)
      expect(decode(bytes).width).toBe(64)
    })

    it('the ONNX model keeps its own backend beside the torch one', async () => {
      const res = await post({ prompt: 'red apple', seed: 5 })
      expect(res.status, await res.clone().text()).toBe(200)
      expect(await res.json()).toMatchObject({ integration: 'edge', backends: ['backend-0'] })
    })

    const faults = [
      ['bad-sha', 502, 'backend_bad_output'],
      ['wrong-size', 502, 'backend_bad_output'],
      ['drop-after-progress', 502, 'backend_failed'],
      ['stall-after-progress', 504, 'backend_timeout'],
    ] as const
    for (const [fault, status, code] of faults) {
      it(`a stream that breaks (${fault}): ${status} ${code}, quota refunded, nothing cached or stuck`, async () => {
        const seed = 500 + faults.findIndex(([f]) => f === fault)
        const body = { model: 'piflux-tiny', prompt: 'a faulty stream', seed }
        faultProxy().mode = fault
        let res: Response
        try {
          res = await post(body)
          expect(res.status, await res.clone().text()).toBe(status)
        } finally {
          faultProxy().mode = 'pass'
        }
        const failed = (await res.json()) as { error: { code: string }; generationId: string }
        expect(failed.error.code).toBe(code)
        const record = await fetch(`${stack.workerUrl}/v1/generations/${failed.generationId}`, {
          headers: auth(),
        })
        expect(await record.json()).toMatchObject({ status: 'failed', error: { code } })
        // The retry runs (no cached failure, no cached broken image) and its unit is the only one spent.
        const before = await post({ model: 'piflux-tiny', prompt: 'quota probe', seed: 1 })
        const retry = await post(body)
        expect(retry.status).toBe(200)
        expect(await retry.json()).toMatchObject({ status: 'succeeded', cached: false })
        expect(remaining(retry)).toBe(remaining(before) - 1)
      })
    }

    it('the torch server killed mid-generation: typed 502, the record failed, not stuck', async () => {
      const res = await post({ model: 'piflux-tiny', prompt: 'doomed', seed: 99 }, sse)
      const events: SseEvent[] = []
      for await (const event of sseEvents(res.body!)) {
        events.push(event)
        if (event.event === 'progress') torch().kill()
      }
      const last = events.at(-1)!
      expect(last.event).toBe('error')
      const error = JSON.parse(last.data) as { id: string; error: { code: string } }
      expect(error.error.code).toMatch(/^backend_failed$|^backends_unavailable$/)
      const record = await fetch(`${stack.workerUrl}/v1/generations/${error.id}`, {
        headers: auth(),
      })
      expect(await record.json()).toMatchObject({
        status: 'failed',
        error: { code: error.error.code },
      })
      // And a new request gets a typed answer at once, not a hang.
      const after = await post({ model: 'piflux-tiny', prompt: 'after the crash', seed: 1 })
      expect([502, 503]).toContain(after.status)
    })
  })
}
