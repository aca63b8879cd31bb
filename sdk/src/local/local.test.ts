/**
 * The local path and `fallback: 'local'` in Node: the real student ONNX on onnxruntime-web's WASM build
 * (Node has no Cache API and no WebGPU; the browser suite in test/browser covers those), model files
 * and API answers from a real local HTTP server.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { streamEventTypes } from '../../../test/support/sse.ts'
import { createClient } from '../client.ts'
import { ApiError, LocalInferenceError, ValidationError } from '../errors.ts'
import {
  MODELS_DIR,
  type ScriptHandler,
  type ScriptServer,
  sendJson,
  serveModelFile,
  startScriptServer,
} from '../testing/script-server.ts'
import type { StreamEvent } from '../types.ts'
import { createLocalGenerator } from './index.ts'
import type { DownloadProgress, LoadProgress } from './types.ts'

/** onnxruntime-web's dist folder, served as `/ort/` like a page would self-host it. */
const ORT_DIST = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/wasm'))
const RUNTIME = 'ort-wasm-simd-threaded.wasm'

const manifest = JSON.parse(readFileSync(join(MODELS_DIR, 'piflow-emoji/manifest.json'), 'utf8'))
const INPUT = { prompt: 'red apple', seed: 7, size: 32 }

let server: ScriptServer | undefined
/** By default every API request has its connection destroyed: the edge is unreachable. */
const serve = async (
  api: ScriptHandler = (_req, res) => {
    res.socket?.destroy()
  },
) => {
  server = await startScriptServer((req, res, attempt) =>
    serveModelFile(req, res) ? undefined : api(req, res, attempt),
  )
  return server
}
afterEach(async () => {
  await server?.close()
  server = undefined
})

const localOptions = (s: ScriptServer) => ({
  modelBaseUrl: `${s.url}/models/`,
  providers: ['wasm' as const],
})

describe('createLocalGenerator (onnxruntime-web WASM in Node)', () => {
  it('generates a seeded image deterministically and reports download progress', async () => {
    const s = await serve()
    const progress: DownloadProgress[] = []
    const local = createLocalGenerator({
      ...localOptions(s),
      onDownloadProgress: (p) => progress.push(p),
    })
    const first = await local.generate(INPUT)
    const second = await local.generate(INPUT)
    const other = await local.generate({ ...INPUT, seed: 8 })

    expect(first.backend).toBe('wasm')
    expect(first.data).toMatchObject({
      seed: 7,
      nfe: 4,
      size: 32,
      path: 'wasm',
      integration: 'cpu',
    })
    const png = first.data.images[0]!.data!
    expect([...png.subarray(0, 4)]).toEqual([0x89, 0x50, 0x4e, 0x47])
    expect(second.data.images[0]!.data).toEqual(png)
    expect(other.data.images[0]!.data).not.toEqual(png)
    expect(first.timings.forwardMs).toBeGreaterThan(0)

    const student = progress.filter((p) => p.file === 'student')
    expect(student.at(-1)).toEqual({
      file: 'student',
      loadedBytes: manifest.files.student.bytes,
      totalBytes: manifest.files.student.bytes,
      cached: false,
    })
    const loaded = student.map((p) => p.loadedBytes)
    expect(loaded).toEqual([...loaded].sort((a, b) => a - b))
    // The model is fetched once per generator, however many images follow.
    expect(s.requests.filter((r) => r.url.endsWith('student.onnx'))).toHaveLength(1)
    await local.dispose()
  })

  it('runs count 2 as one batch-2 forward (its own session) with the images of count 1', async () => {
    const s = await serve()
    const local = createLocalGenerator(localOptions(s))
    const single = await local.generate({ ...INPUT, seed: 8 })
    const pair = await local.generate({ ...INPUT, count: 2 })
    expect(pair.data.images.map((i) => i.seed)).toEqual([7, 8])
    // Sessions fix their batch size (static shapes); image i still uses seed + i.
    expect(pair.data.images[1]!.data).toEqual(single.data.images[0]!.data)
    expect(pair.data.images[0]!.data).not.toEqual(single.data.images[0]!.data)
    await local.dispose()
  })

  it('validates input like the API does, with the same ValidationError', async () => {
    const s = await serve()
    const local = createLocalGenerator(localOptions(s))
    const error = await local.generate({ prompt: '  ', nfe: 3, size: 33, seed: -1 }).catch((e) => e)
    expect(error).toBeInstanceOf(ValidationError)
    expect(error.fieldErrors.map((f: { path: string }) => f.path).sort()).toEqual([
      'nfe',
      'prompt',
      'seed',
      'size',
    ])
  })

  it('rejects a file that differs from the manifest, before buffering more than it declares', async () => {
    const tampered = async (body: Buffer, headers: Record<string, string>) => {
      server = await startScriptServer((req, res) => {
        if (!req.url.endsWith('student.onnx')) return void serveModelFile(req, res)
        res.writeHead(200, headers)
        res.end(body)
      })
      return createLocalGenerator(localOptions(server))
        .generate(INPUT)
        .catch((e) => e)
    }
    const bytes = readFileSync(join(MODELS_DIR, 'piflow-emoji/student.onnx'))
    const flipped = Buffer.from(bytes)
    flipped[100] = flipped[100]! ^ 0xff
    const wrongHash = await tampered(flipped, { 'content-length': String(flipped.length) })
    expect(wrongHash).toBeInstanceOf(LocalInferenceError)
    expect(wrongHash).toMatchObject({ code: 'integrity_mismatch' })
    expect(wrongHash.message).toMatch(/sha256/)
    await server?.close()

    const longer = Buffer.concat([bytes, Buffer.alloc(10)])
    const tooBig = await tampered(longer, { 'content-length': String(longer.length) })
    expect(tooBig).toMatchObject({ code: 'integrity_mismatch' })
    expect(tooBig.message).toMatch(/bytes, the manifest says/)
  })
})

describe('local stream() and load progress', () => {
  it('streams the remote event shapes, fetches the runtime file itself and reports stages', async () => {
    const s = await serve((req, res) => {
      const name = req.url.slice('/ort/'.length)
      if (!req.url.startsWith('/ort/') || name.includes('/')) return void res.writeHead(404).end()
      const bytes = readFileSync(join(ORT_DIST, name))
      res.writeHead(200, { 'content-length': String(bytes.length) })
      res.end(bytes)
    })
    const stages: LoadProgress[] = []
    const files: DownloadProgress[] = []
    // ORT imports its .mjs glue from wasmPaths, and Node imports only file: URLs; the SDK fetches the
    // .wasm from there too, which this fetch sends to the HTTP server (to count its downloads).
    const folder = pathToFileURL(`${ORT_DIST}/`).href
    const local = createLocalGenerator({
      ...localOptions(s),
      wasmPaths: folder,
      fetch: (input, init) => fetch(String(input).replace(folder, `${s.url}/ort/`), init),
      onProgress: (p) => stages.push(p),
      onDownloadProgress: (p) => files.push(p),
    })
    const progress: number[] = []
    const events: StreamEvent[] = []
    for await (const e of local.stream(INPUT, { onProgress: (p) => progress.push(p.step) })) {
      events.push(e)
    }
    expect(events.map((e) => e.type)).toEqual(streamEventTypes(4))
    expect(events[1]).toEqual({ type: 'progress', step: 1, nfe: 4 })
    expect(progress).toEqual([1, 2, 3, 4])
    const done = events.at(-1) as Extract<StreamEvent, { type: 'done' }>
    expect(done.result.data.images[0]!.data).toEqual(
      (await createLocalGenerator(localOptions(s)).generate(INPUT)).data.images[0]!.data,
    )

    // The runtime came through the SDK's download (progress, size), once per generator.
    const runtimeSize = readFileSync(join(ORT_DIST, RUNTIME)).length
    expect(files.filter((f) => f.file === RUNTIME).at(-1)).toMatchObject({
      loadedBytes: runtimeSize,
      totalBytes: runtimeSize,
    })
    await local.generate({ ...INPUT, seed: 9 })
    expect(s.requests.filter((r) => r.url === `/ort/${RUNTIME}`)).toHaveLength(1)

    // One overall progress: downloads (bytes never going back), then compile, then ready, once.
    expect(stages.map((p) => p.stage).filter((st, i, all) => st !== all[i - 1])).toEqual([
      'download',
      'compile',
      'ready',
    ])
    const loaded = stages.filter((p) => p.stage === 'download').map((p) => p.loadedBytes)
    expect(loaded).toEqual([...loaded].sort((a, b) => a - b))
    const last = stages.at(-1)!
    const modelBytes = manifest.files.student.bytes + manifest.files.tokenizer.bytes
    expect(last).toMatchObject({ stage: 'ready', loadedBytes: modelBytes + runtimeSize })
    expect(last.totalBytes).toBe(last.loadedBytes)
    await local.dispose()
  })
})

describe("client fallback: 'local'", () => {
  it('generates locally when the edge is unreachable, same image as the local path', async () => {
    const s = await serve() // every API request: connection destroyed
    const client = createClient({
      baseUrl: s.url,
      apiKey: 'k',
      retry: { limit: 1, delay: 1 },
      fallback: 'local',
      local: localOptions(s),
    })
    const result = await client.generate(INPUT)
    expect(result.backend).toBe('wasm')
    expect(s.requests.filter((r) => r.url === '/v1/generations')).toHaveLength(2)
    const direct = await createLocalGenerator(localOptions(s)).generate(INPUT)
    expect(result.data.images[0]!.data).toEqual(direct.data.images[0]!.data)
  })

  it('generates locally when the edge says no backend can serve it (after retrying)', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 503, {
        error: { code: 'backends_unavailable', message: 'down' },
        requestId: 'r',
      }),
    )
    const client = createClient({
      baseUrl: s.url,
      retry: { limit: 2, delay: 1 },
      fallback: 'local',
      local: localOptions(s),
    })
    const result = await client.generate(INPUT)
    expect(result.backend).toBe('wasm')
    expect(s.requests.filter((r) => r.url === '/v1/generations')).toHaveLength(3)
  })

  it('does not fall back on other server errors', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 500, { error: { code: 'internal_error', message: 'x' }, requestId: 'r' }),
    )
    const client = createClient({ baseUrl: s.url, fallback: 'local', local: localOptions(s) })
    const error = await client.generate(INPUT).catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(s.requests.some((r) => r.url.startsWith('/models/'))).toBe(false)
  })

  it('streams local progress, image and done events when the edge is unreachable', async () => {
    const s = await serve()
    const client = createClient({
      baseUrl: s.url,
      retry: 0,
      fallback: 'local',
      local: localOptions(s),
    })
    const progress: number[] = []
    const events: StreamEvent[] = []
    for await (const event of client.stream(INPUT, { onProgress: (p) => progress.push(p.step) })) {
      events.push(event)
    }
    expect(events.map((e) => e.type)).toEqual(streamEventTypes(4))
    expect(progress).toEqual([1, 2, 3, 4])
    expect(events[0]).toMatchObject({
      type: 'id',
      seed: 7,
      nfe: 4,
      count: 1,
      model: 'piflow-emoji',
    })
    const done = events.at(-1) as Extract<StreamEvent, { type: 'done' }>
    expect(done.result.backend).toBe('wasm')
    expect(done.result.data.id).toBe((events[0] as { id: string }).id)
  })
})
