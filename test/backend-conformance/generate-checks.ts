/**
 * @module generate-checks
 * Conformance checks of the whole-generation endpoints (backend/PROTOCOL.md "Whole generations"), run
 * for models whose `/v1/models` entry advertises `capabilities: ["generate", …]`: the NDJSON event
 * stream, images as PNG of the asked size, seeds, previews, errors, cancellation by id and by
 * disconnect. Only HTTP + JSON + PNG; nothing here knows how the server is built.
 *
 * The cancellation checks need a generation that outlasts one HTTP round trip after its first NFE:
 * true of any real model on a GPU; a server with a tiny test model needs a per-NFE delay (the PyTorch
 * backend's `--debug-step-delay-ms`).
 */

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { decode as decodePng } from 'fast-png'
import { expectError, SECRET_HEADER } from './protocol.ts'

export interface GenerateModel {
  id: string
  capabilities?: string[]
  image: {
    defaultWidth: number
    defaultHeight: number
    minSide: number
    maxSide: number
    multipleOf: number
    maxPixels: number
  }
  text: { maxPromptChars: number }
  guidance: { default: number | null; min?: number | null; max?: number | null }
  defaultNfe: number
  nfeOptions: number[]
  maxCount: number
}

export interface GenerateTarget {
  url: string
  secret: string
}

export interface GenerationEvent {
  type: string
  id?: string
  [key: string]: unknown
}

/** A fresh generation id (the worker sends its request id). */
export function generationId(tag: string): string {
  return `conf-${tag}-${randomBytes(6).toString('hex')}`
}

export function generatePath(model: string): string {
  return `/v1/models/${encodeURIComponent(model)}/generate`
}

/** POSTs a generate request; `body` may be any JSON value or a raw string. */
export function postGenerate(
  t: GenerateTarget,
  model: string,
  body: unknown,
  init: { id?: string; contentType?: string; signal?: AbortSignal } = {},
): Promise<Response> {
  const headers: Record<string, string> = {
    [SECRET_HEADER]: t.secret,
    'Content-Type': init.contentType ?? 'application/json',
  }
  if (init.id) headers['X-Request-Id'] = init.id
  return fetch(new URL(generatePath(model), t.url), {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: init.signal ?? AbortSignal.timeout(120_000),
  })
}

/** NDJSON events as they arrive; blank lines (keepalives) are skipped. */
export async function* ndjsonEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<GenerationEvent> {
  const reader = body
    .pipeThrough(new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>)
    .getReader()
  let buffer = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    buffer += value
    let end = buffer.indexOf('\n')
    while (end >= 0) {
      const line = buffer.slice(0, end).trim()
      buffer = buffer.slice(end + 1)
      end = buffer.indexOf('\n')
      if (line.length > 0) yield JSON.parse(line) as GenerationEvent
    }
  }
  if (buffer.trim().length > 0) yield JSON.parse(buffer) as GenerationEvent
}

/** Runs one generation to its terminal event and returns every event. */
export async function generateAll(
  t: GenerateTarget,
  model: string,
  body: unknown,
  id = generationId('run'),
): Promise<GenerationEvent[]> {
  const response = await postGenerate(t, model, body, { id })
  if (response.status !== 200)
    assert.fail(`generate → ${response.status}: ${await response.text()}`)
  assert.match(response.headers.get('content-type') ?? '', /application\/x-ndjson/)
  assert.equal(response.headers.get('x-request-id'), id, 'X-Request-Id echoed')
  const events: GenerationEvent[] = []
  for await (const event of ndjsonEvents(response.body as ReadableStream<Uint8Array>)) {
    events.push(event)
  }
  return events
}

/** A small valid request for `model` (its smallest square size, for speed). */
export function smallRequest(model: GenerateModel, overrides: Record<string, unknown> = {}) {
  const side = Math.max(model.image.minSide, model.image.multipleOf)
  return { prompt: 'a red apple on a table', seed: 7, width: side, height: side, ...overrides }
}

interface PngImage {
  width: number
  height: number
  rgb: Uint8Array
}

function decodeImage(base64: string): PngImage {
  const bytes = Buffer.from(base64, 'base64')
  const png = decodePng(bytes)
  assert.ok(png.channels === 3 || png.channels === 4, `PNG channels ${png.channels}`)
  assert.equal(png.depth, 8, 'PNG bit depth')
  const rgb = new Uint8Array(png.width * png.height * 3)
  for (let i = 0; i < png.width * png.height; i++) {
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = png.data[i * png.channels + c] as number
  }
  return { width: png.width, height: png.height, rgb }
}

function imagesOf(events: GenerationEvent[]): GenerationEvent[] {
  return events.filter((e) => e.type === 'image').sort((a, b) => Number(a.index) - Number(b.index))
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length, 'image sizes')
  let sum = 0
  for (let i = 0; i < a.length; i++) sum += Math.abs((a[i] as number) - (b[i] as number))
  return sum / a.length
}

/** Asserts the event sequence of a successful generation and returns its images, decoded. */
export function assertSucceeded(
  events: GenerationEvent[],
  expect: { id: string; nfe: number; count: number; width: number; height: number; seed: number },
): PngImage[] {
  const types = events.map((e) => e.type)
  const last = events.at(-1)
  assert.equal(last?.type, 'done', `terminal event: ${JSON.stringify(last)?.slice(0, 300)}`)
  assert.equal(types[0], 'queued', `first event: ${types.join(',')}`)
  assert.ok(types.includes('started'), 'a started event')
  for (const event of events)
    assert.equal(event.id, expect.id, `event ${event.type} carries the id`)
  const steps = events.filter((e) => e.type === 'progress')
  assert.deepEqual(
    steps.map((e) => e.step),
    Array.from({ length: expect.nfe }, (_, i) => i + 1),
    'one progress event per NFE, steps 1…nfe',
  )
  for (const step of steps) assert.equal(step.nfe, expect.nfe)
  const images = imagesOf(events)
  assert.deepEqual(
    images.map((e) => [e.index, e.seed]),
    Array.from({ length: expect.count }, (_, i) => [i, (expect.seed + i) % 2 ** 32]),
    'one image per count, image i with seed + i',
  )
  assert.ok(
    types.lastIndexOf('progress') < types.indexOf('image'),
    'images come after the last progress event',
  )
  return images.map((event) => {
    assert.equal(event.contentType, 'image/png')
    const data = event.data as string
    const bytes = Buffer.from(data, 'base64')
    assert.equal(event.bytes, bytes.length, 'bytes')
    assert.equal(event.sha256, createHash('sha256').update(bytes).digest('hex'), 'sha256')
    const image = decodeImage(data)
    assert.deepEqual([image.width, image.height], [expect.width, expect.height], 'PNG size')
    assert.deepEqual([event.width, event.height], [expect.width, expect.height], 'declared size')
    return image
  })
}

/** Reads events until `predicate` matches one; returns that event and the rest of the stream. */
async function readUntil(
  events: AsyncGenerator<GenerationEvent>,
  predicate: (e: GenerationEvent) => boolean,
  seen: GenerationEvent[],
): Promise<GenerationEvent> {
  for (;;) {
    const { done, value } = await events.next()
    if (done) assert.fail(`stream ended before the awaited event; got ${seen.map((e) => e.type)}`)
    seen.push(value)
    if (predicate(value)) return value
  }
}

function cancel(t: GenerateTarget, id: string): Promise<Response> {
  return fetch(new URL(`/v1/generations/${encodeURIComponent(id)}/cancel`, t.url), {
    method: 'POST',
    headers: { [SECRET_HEADER]: t.secret },
    signal: AbortSignal.timeout(60_000),
  })
}

async function readyStats(t: GenerateTarget): Promise<{ cancelled?: number } | undefined> {
  const response = await fetch(new URL('/readyz', t.url))
  return ((await response.json()) as { stats?: { cancelled?: number } }).stats
}

export interface GenerateCheck {
  name: string
  run(t: GenerateTarget, model: GenerateModel): Promise<void>
}

/** The checks, each run against the first model that advertises `generate`. */
export const generateChecks: GenerateCheck[] = [
  {
    name: 'generate streams queued, started, one progress per NFE, PNG images of the asked size, done',
    async run(t, model) {
      const count = Math.min(2, model.maxCount)
      const request = smallRequest(model, { count })
      const id = generationId('stream')
      const events = await generateAll(t, model.id, request, id)
      assertSucceeded(events, {
        id,
        nfe: model.defaultNfe,
        count,
        width: request.width,
        height: request.height,
        seed: request.seed,
      })
      const done = events.at(-1) as GenerationEvent
      assert.equal(
        typeof (done.timings as { totalMs?: unknown })?.totalMs,
        'number',
        'done.timings.totalMs',
      )
      // a non-square size
      const wide = smallRequest(model, { width: 2 * request.width })
      if (wide.width <= model.image.maxSide && wide.width * wide.height <= model.image.maxPixels) {
        const wideId = generationId('wide')
        assertSucceeded(await generateAll(t, model.id, wide, wideId), {
          id: wideId,
          nfe: model.defaultNfe,
          count: 1,
          width: wide.width,
          height: wide.height,
          seed: wide.seed,
        })
      }
    },
  },
  {
    name: 'generate is deterministic: the same request gives the same PNG bytes; image i equals seed + i alone',
    async run(t, model) {
      const count = Math.min(2, model.maxCount)
      const request = smallRequest(model, { seed: 4_294_967_295, count })
      const first = imagesOf(await generateAll(t, model.id, request))
      const again = imagesOf(await generateAll(t, model.id, request))
      assert.deepEqual(
        again.map((e) => e.sha256),
        first.map((e) => e.sha256),
        'the same request twice gives the same bytes',
      )
      if (count < 2) return
      // image 1 of seed 2³²−1 uses seed 0 (mod 2³²): the same as a request for seed 0 alone, up to the
      // float rounding of a batch of two vs one.
      const alone = imagesOf(await generateAll(t, model.id, { ...request, seed: 0, count: 1 }))
      assert.equal(first[1]?.seed, 0)
      const diff = meanAbsDiff(
        decodeImage(first[1]?.data as string).rgb,
        decodeImage(alone[0]?.data as string).rgb,
      )
      assert.ok(diff < 0.5, `image 1 of the pair vs seed 0 alone: mean |Δ| ${diff} levels`)
      const other = meanAbsDiff(
        decodeImage(first[0]?.data as string).rgb,
        decodeImage(alone[0]?.data as string).rgb,
      )
      assert.ok(other > diff, 'different seeds give different images')
    },
  },
  {
    name: 'generate with preview: every progress event has a PNG data URI preview; without: none',
    async run(t, model) {
      const withPreview = await generateAll(t, model.id, smallRequest(model, { preview: true }))
      const steps = withPreview.filter((e) => e.type === 'progress')
      assert.equal(steps.length, model.defaultNfe)
      for (const step of steps) {
        const uri = step.preview as string
        assert.match(uri ?? '', /^data:image\/png;base64,/, 'preview data URI')
        const preview = decodeImage(uri.slice(uri.indexOf(',') + 1))
        assert.ok(preview.width >= 1 && preview.width <= 512, `preview width ${preview.width}`)
      }
      const without = await generateAll(t, model.id, smallRequest(model))
      for (const step of without.filter((e) => e.type === 'progress'))
        assert.equal(step.preview, undefined, 'no preview unless asked')
    },
  },
  {
    name: 'generate refuses bad requests with 400/415 and stable codes, and keeps serving',
    async run(t, model) {
      const send = (body: unknown, contentType?: string) =>
        postGenerate(t, model.id, body, contentType ? { contentType } : {})
      const good = smallRequest(model)
      await expectError(await send('{"prompt":'), 400, 'malformed_json')
      await expectError(await send('[1,2]'), 400, 'malformed_json')
      await expectError(await send(good, 'text/plain'), 415, 'unsupported_media_type')
      const { prompt: _, ...noPrompt } = good
      await expectError(await send(noPrompt), 400, 'invalid_request')
      const { seed: __, ...noSeed } = good
      await expectError(await send(noSeed), 400, 'invalid_request')
      await expectError(await send({ ...good, extra: 1 }), 400, 'invalid_request')
      await expectError(await send({ ...good, count: '2' }), 400, 'invalid_request')
      await expectError(await send({ ...good, seed: -1 }), 400, 'invalid_request')
      await expectError(await send({ ...good, seed: 2 ** 32 }), 400, 'invalid_request')
      await expectError(await send({ ...good, prompt: '   ' }), 400, 'invalid_value')
      await expectError(
        await send({ ...good, prompt: 'x'.repeat(model.text.maxPromptChars + 1) }),
        400,
        'invalid_value',
      )
      await expectError(await send({ ...good, count: 0 }), 400, 'invalid_value')
      await expectError(await send({ ...good, count: model.maxCount + 1 }), 400, 'invalid_value')
      const badNfe = Math.max(...model.nfeOptions) + 1
      await expectError(await send({ ...good, nfe: badNfe }), 400, 'invalid_value')
      await expectError(await send({ ...good, width: good.width + 1 }), 400, 'invalid_value')
      await expectError(
        await send({ ...good, width: model.image.maxSide + model.image.multipleOf }),
        400,
        'invalid_value',
      )
      await expectError(
        await send({ ...good, height: model.image.minSide - model.image.multipleOf }),
        400,
        'invalid_value',
      )
      if (model.guidance.default === null) {
        await expectError(await send({ ...good, guidance: 3 }), 400, 'invalid_value')
      } else {
        await expectError(
          await send({ ...good, guidance: (model.guidance.max as number) + 1 }),
          400,
          'invalid_value',
        )
      }
      // still serving
      const id = generationId('after-errors')
      assertSucceeded(await generateAll(t, model.id, good, id), {
        id,
        nfe: model.defaultNfe,
        count: 1,
        width: good.width,
        height: good.height,
        seed: good.seed,
      })
    },
  },
  {
    name: 'cancel by id ends the stream with error "cancelled" before the last NFE; a second POST with a live id is 409',
    async run(t, model) {
      const nfe = Math.max(...model.nfeOptions)
      const id = generationId('cancel')
      const response = await postGenerate(t, model.id, smallRequest(model, { nfe }), { id })
      assert.equal(response.status, 200)
      const events = ndjsonEvents(response.body as ReadableStream<Uint8Array>)
      const seen: GenerationEvent[] = []
      await readUntil(events, (e) => e.type === 'progress', seen)
      await expectError(
        await postGenerate(t, model.id, smallRequest(model, { nfe }), { id }),
        409,
        'duplicate_generation',
      )
      const cancelled = await cancel(t, id)
      assert.equal(
        cancelled.status,
        200,
        `cancel → ${cancelled.status}: ${await cancelled.clone().text()}`,
      )
      const terminal = await readUntil(events, (e) => e.type === 'done' || e.type === 'error', seen)
      assert.equal(terminal.type, 'error', 'a cancelled generation does not finish')
      assert.equal((terminal.error as { code?: string })?.code, 'cancelled')
      const steps = seen.filter((e) => e.type === 'progress').length
      assert.ok(steps < nfe, `stopped between NFEs (${steps} of ${nfe} ran)`)
      assert.equal(seen.filter((e) => e.type === 'image').length, 0, 'no image after cancel')
      await expectError(await cancel(t, id), 404, 'generation_not_found')
      await expectError(await cancel(t, generationId('unknown')), 404, 'generation_not_found')
    },
  },
  {
    name: 'a client that disconnects cancels its generation; the server keeps serving',
    async run(t, model) {
      const before = (await readyStats(t))?.cancelled
      const abort = new AbortController()
      const nfe = Math.max(...model.nfeOptions)
      const id = generationId('disconnect')
      const response = await postGenerate(t, model.id, smallRequest(model, { nfe }), {
        id,
        signal: abort.signal,
      })
      const events = ndjsonEvents(response.body as ReadableStream<Uint8Array>)
      await readUntil(events, (e) => e.type === 'progress', [])
      abort.abort()
      await events.return(undefined).catch(() => undefined)
      if (before !== undefined) {
        // the server counts it once it notices (at once, or at its next NFE boundary)
        const deadline = Date.now() + 30_000
        while (((await readyStats(t))?.cancelled ?? 0) <= before && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100))
        assert.ok(((await readyStats(t))?.cancelled ?? 0) > before, '/readyz stats.cancelled grew')
      }
      const next = generationId('after-disconnect')
      const again = smallRequest(model)
      assertSucceeded(await generateAll(t, model.id, again, next), {
        id: next,
        nfe: model.defaultNfe,
        count: 1,
        width: again.width,
        height: again.height,
        seed: again.seed,
      })
    },
  },
]
