/**
 * Every model the stack serves, end to end through `wrangler dev` (workerd) and real backend processes:
 * every committed `models/<id>/`, and the model directory named by `PIFLOW_TEST_MODEL_DIR` when set (the
 * next default model, before it is committed: e.g. `PIFLOW_TEST_MODEL_DIR=/path/to/piflow-emoji-v2`).
 *
 * For each: every output size gives the same PNG bytes with the rollout at the edge and on the
 * backend, and the same pixels as the backend called directly (4 × /step, the protocol alone); the
 * most images per request; SSE with native-size previews; a job (`Prefer: respond-async`) and then
 * the seeded cache. Besides: model files with a licence `notice` are published and served as text (a
 * copy of the shipped model whose manifest lists its NOTICE, so this runs in a clone without v2), and
 * the default model is the first of PIFLOW_MODELS, so switching it is one line of configuration.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTokenizer, latentToRgba } from '@piflow/models'
import { MAX_COUNT, SECRET_HEADER } from '@piflow/protocol'
import { decode } from 'fast-png'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomSecret, type Service, startWorker } from '../../scripts/local-stack.ts'
import {
  committedModelDirs,
  configuredModels,
  type ModelDir,
  NOTICE_MODEL_ID,
  noticeModel,
  readModelDir,
  SHIPPED_MODEL_DIR,
  testModelDir,
} from '../support/model-dirs.ts'
import { type SseEvent, sseEvents, streamEventTypes } from '../support/sse.ts'
import { postGeneration, type Stack, startStack } from '../support/stack.ts'
import { generateOverSteps } from '../support/step-client.ts'

interface Generation {
  id: string
  model: string
  status: string
  cached: boolean
  integration: string
  images: { url: string; sha256: string; width: number; height: number; seed: number }[]
}

interface ModelEntry {
  id: string
  files: { key: string; role: string; sha256: string; bytes: number; url: string }[]
}

const extra = testModelDir()
const shipped = readModelDir(SHIPPED_MODEL_DIR)
const committed = committedModelDirs()
/** The env's model unless it is a committed one already. */
const outside: ModelDir[] =
  'skipReason' in extra || committed.some((m) => m.manifest.id === extra.manifest.id) ? [] : [extra]
const underTest: ModelDir[] = [...committed, ...outside]
if ('skipReason' in extra) console.log(`models.test.ts: ${extra.skipReason}`)
/** Served after wrangler.toml's PIFLOW_MODELS (wrangler-dev.ts skips those it lists already). */
const added = [NOTICE_MODEL_ID, ...underTest.map((m) => m.manifest.id)]

let tmp: string
let notice: ModelDir
let stack: Stack
/** Integrates on the backend (`/step`); its PIFLOW_MODELS puts the last model under test first. */
let backendWorker: Service
const RATE = { PIFLOW_RATE_LIMIT: '100000/60' }

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  postGeneration({ workerUrl: url, apiKey: stack.apiKey }, body, headers)

async function generation(url: string, body: unknown): Promise<Generation> {
  const res = await post(url, body)
  const text = await res.text()
  expect(res.status, text).toBe(200)
  return JSON.parse(text) as Generation
}

async function download(url: string): Promise<Uint8Array> {
  const res = await fetch(url)
  expect(res.status).toBe(200)
  return new Uint8Array(await res.arrayBuffer())
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'piflow-models-e2e-'))
  notice = noticeModel(tmp)
  const modelDirs = [notice.dir, ...outside.map((m) => m.dir)]
  stack = await startStack({ modelDirs, addModels: added, env: RATE })
  const defaultFirst = underTest.at(-1)!.manifest.id
  backendWorker = await startWorker({
    backends: [{ id: 'backend-0', url: stack.backendUrl }],
    backendSecret: stack.backendSecret,
    devApiKey: stack.apiKey,
    signingSecret: randomSecret(),
    modelDirs,
    vars: {
      ...RATE,
      PIFLOW_INTEGRATION: 'backend',
      PIFLOW_MODELS: [defaultFirst, ...new Set(['piflow-emoji', ...added])].join(','),
    },
  })
})
afterAll(async () => {
  await backendWorker?.stop()
  await stack?.stop()
  if (tmp) rmSync(tmp, { recursive: true, force: true })
})

describe('model files', () => {
  it('the worker lists wrangler.toml’s models, then the added ones; the backend loads them all', async () => {
    const list = (await (await fetch(`${stack.workerUrl}/v1/models`)).json()) as {
      data: ModelEntry[]
    }
    const ids = list.data.map((m) => m.id)
    const { local } = await configuredModels()
    expect(ids).toEqual([...new Set([...local, ...added])])
    const backend = (await (
      await fetch(`${stack.backendUrl}/v1/models`, {
        headers: { [SECRET_HEADER]: stack.backendSecret },
      })
    ).json()) as { models: { id: string }[] }
    expect(backend.models.map((m) => m.id).sort()).toEqual([...new Set(ids)].sort())
  })

  it('a notice is published beside the weights and served as UTF-8 text with its sha256 as ETag', async () => {
    const withNotice = [notice, ...underTest].filter((m) =>
      Object.values(m.manifest.files).some((f) => f.role === 'notice'),
    )
    expect(withNotice.map((m) => m.manifest.id)).toContain(NOTICE_MODEL_ID)
    for (const model of withNotice) {
      const entry = (await (
        await fetch(`${stack.workerUrl}/v1/models/${model.manifest.id}`)
      ).json()) as ModelEntry
      const file = entry.files.find((f) => f.role === 'notice')!
      const res = await fetch(file.url)
      expect(res.status).toBe(200)
      expect(res.headers.get('Content-Type')).toBe('text/plain; charset=utf-8')
      expect(res.headers.get('ETag')).toBe(`"${file.sha256}"`)
      const path = model.manifest.files[file.key]!.path
      expect(Buffer.from(await res.arrayBuffer())).toEqual(readFileSync(join(model.dir, path)))
    }
  })

  it('the shipped manifest is served unchanged: its files, a notice role exactly where it lists one', async () => {
    const entry = (await (
      await fetch(`${stack.workerUrl}/v1/models/piflow-emoji`)
    ).json()) as ModelEntry
    expect(entry.files.map((f) => f.key).sort()).toEqual(Object.keys(shipped.manifest.files).sort())
    const listsNotice = Object.values(shipped.manifest.files).some((f) => f.role === 'notice')
    expect(entry.files.some((f) => f.role === 'notice')).toBe(listsNotice)
  })
})

describe('the default model', () => {
  it('is named once per environment in wrangler.toml, the same in both, and is a model of models/', async () => {
    const { local, production } = await configuredModels()
    expect(local[0]).toBeDefined()
    expect(production[0]).toBe(local[0])
    // CI has only the committed models: the default must be one of them (not a backend's).
    expect(committed.map((m) => m.manifest.id)).toContain(local[0])
  })

  it('is the first of PIFLOW_MODELS: a request that names none gets it at its native size', async () => {
    const first = underTest.at(-1)!.manifest
    const gen = await generation(backendWorker.url, { prompt: 'red apple', seed: 5 })
    expect(gen.model).toBe(first.id)
    expect(gen.images[0]!.width).toBe(first.image.width)
    // The stack's worker keeps wrangler.toml's list: its first is the default there.
    const configured = await generation(stack.workerUrl, { prompt: 'red apple', seed: 5 })
    expect(configured.model).toBe((await configuredModels()).local[0])
  })
})

describe.each(underTest.map((m) => [m.manifest.id, m] as const))('serving %s', (id, model) => {
  const { manifest } = model
  const tokenizer = createTokenizer(
    JSON.parse(
      readFileSync(join(model.dir, manifest.files[manifest.text.tokenizer]!.path), 'utf8'),
    ),
  )
  const prompt = 'red apple'
  const native = manifest.image.width
  const largest = Math.max(...manifest.image.outputSizes)

  it.each(manifest.image.outputSizes)(
    'size %i: the same PNG bytes at the edge and on the backend, the pixels of the backend called directly',
    async (size) => {
      const body = { model: id, prompt, seed: 1000 + size, size }
      // One after the other: concurrent forwards share an onnxruntime run (the backend batches them),
      // and a batch of another size may round differently in the last bit.
      const edge = await generation(stack.workerUrl, body)
      const onBackend = await generation(backendWorker.url, body)
      const direct = await generateOverSteps(
        { url: stack.backendUrl, secret: stack.backendSecret },
        manifest,
        tokenizer.encode(prompt),
        body.seed,
      )
      expect([edge.integration, onBackend.integration]).toEqual(['edge', 'backend'])
      expect(edge.images[0]).toMatchObject({ width: size, height: size })
      expect(onBackend.images[0]!.sha256).toBe(edge.images[0]!.sha256)
      const png = decode(await download(edge.images[0]!.url))
      const expected = latentToRgba(direct, { ...manifest.latent, batch: 1 }, size, {
        valueRange: manifest.image.valueRange,
      })
      expect([png.width, png.height, png.channels]).toEqual([size, size, 4])
      expect(Buffer.from(png.data as Uint8Array).equals(Buffer.from(expected))).toBe(true)
    },
  )

  it(`${MAX_COUNT} images at ${largest} px on both integrations: image i is seed + i's image`, async () => {
    const seed = 1000 + largest
    const body = { model: id, prompt, seed, size: largest, count: MAX_COUNT }
    const single = await generation(stack.workerUrl, { ...body, count: 1 })
    const edge = await generation(stack.workerUrl, body)
    const onBackend = await generation(backendWorker.url, body)
    expect(edge.images.map((i) => i.seed)).toEqual([0, 1, 2, 3].map((i) => seed + i))
    expect(onBackend.images.map((i) => i.sha256)).toEqual(edge.images.map((i) => i.sha256))
    expect(edge.images[0]!.sha256).toBe(single.images[0]!.sha256)
    expect(new Set(edge.images.map((i) => i.sha256)).size).toBe(MAX_COUNT)
  })

  it('SSE: id, a progress per NFE with a native-size preview, the image, done', async () => {
    const res = await post(
      stack.workerUrl,
      { model: id, prompt, seed: 7 },
      {
        Accept: 'text/event-stream',
      },
    )
    expect(res.headers.get('Content-Type')).toContain('text/event-stream')
    const events: SseEvent[] = []
    for await (const event of sseEvents(res.body!)) events.push(event)
    const nfe = manifest.sampling.defaultNfe
    expect(events.map((e) => e.event)).toEqual(streamEventTypes(nfe))
    for (const event of events.slice(1, 1 + nfe)) {
      const preview = (JSON.parse(event.data).preview as string).split(',')[1]!
      const image = decode(Buffer.from(preview, 'base64'))
      expect([image.width, image.height]).toEqual([native, native])
    }
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ status: 'succeeded', model: id })
  })

  it('a job (respond-async) finishes; the same seeded request is then a cache hit with its bytes', async () => {
    const body = { model: id, prompt: 'smiling face', seed: 11, size: largest }
    const accepted = await post(stack.workerUrl, body, { Prefer: 'respond-async' })
    expect(accepted.status).toBe(202)
    const { id: generationId } = (await accepted.json()) as { id: string }
    let job: Generation | undefined
    for (let i = 0; i < 600 && job?.status !== 'succeeded'; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100))
      job = (await (
        await fetch(`${stack.workerUrl}/v1/generations/${generationId}`, {
          headers: { Authorization: `Bearer ${stack.apiKey}` },
        })
      ).json()) as Generation
      expect(job.status).not.toBe('failed')
    }
    expect(job).toMatchObject({ status: 'succeeded', model: id })
    const hit = await generation(stack.workerUrl, body)
    expect(hit.cached).toBe(true)
    expect(hit.images[0]!.sha256).toBe(job!.images[0]!.sha256)
  })
})
