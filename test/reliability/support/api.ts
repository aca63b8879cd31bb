/**
 * @module test/reliability/support/api
 * Plain-fetch helpers for the reliability suites. Every request carries a timeout, so a hang fails the
 * test that caused it instead of the whole run.
 */
import { createHash } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { decode } from 'fast-png'
import { expect } from 'vitest'

/** Longest any single request may take before it counts as a hang. */
export const REQUEST_TIMEOUT_MS = 30_000

/** The public Generation JSON, as far as these suites read it. */
export interface Generation {
  id: string
  status: 'running' | 'succeeded' | 'failed'
  cached: boolean
  seed: number
  size: number
  backends: string[]
  images: { url: string; sha256: string; width: number; height: number; bytes: number }[]
  error: { code: string; message: string } | null
}

/** An error body `{ error: { code, message }, requestId }`. */
export interface ErrorBody {
  error: { code: string; message: string }
  requestId: string
  generationId?: string
}

/** A response read to the end: status, headers and parsed JSON (or `undefined` when not JSON). */
export interface ReadResponse {
  status: number
  headers: Headers
  text: string
  json: unknown
}

/** fetch with a hard timeout; reads the whole body. */
export async function call(url: string, init: RequestInit = {}): Promise<ReadResponse> {
  const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const response = await fetch(url, { ...init, signal: init.signal ?? signal })
  const text = await response.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: response.status, headers: response.headers, text, json }
}

/** Asserts a JSON error body with a stable snake_case code; returns the code. */
export function expectErrorBody(response: ReadResponse, statuses?: number[]): string {
  if (statuses) expect(statuses, response.text).toContain(response.status)
  expect(response.headers.get('content-type') ?? '').toMatch(/^application\/json/)
  const body = response.json as ErrorBody
  expect(body?.error?.code, response.text).toMatch(/^[a-z][a-z0-9_]*$/)
  expect(typeof body.error.message).toBe('string')
  expect(typeof body.requestId).toBe('string')
  return body.error.code
}

/** POST /v1/generations with JSON. */
export function postGeneration(
  workerUrl: string,
  apiKey: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<ReadResponse> {
  return call(`${workerUrl}/v1/generations`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${apiKey}`,
      'Content-Type': 'application/json',
      ...headers,
    },
    body: JSON.stringify(body),
  })
}

/** POST /v1/generations asking for SSE; the response is returned unread (its body is the stream). */
export function postGenerationStream(
  workerUrl: string,
  apiKey: string,
  body: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${workerUrl}/v1/generations`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${apiKey}`,
      'Content-Type': 'application/json',
      Accept: 'text/event-stream',
      ...init.headers,
    },
    body: JSON.stringify(body),
    ...(init.signal ? { signal: init.signal } : {}),
  })
}

/** GET /v1/generations/:id. */
export function getGeneration(workerUrl: string, apiKey: string, id: string) {
  return call(`${workerUrl}/v1/generations/${encodeURIComponent(id)}`, {
    headers: { Authorization: `Bearer ${apiKey}` },
  })
}

/** Downloads an image by its signed URL and checks it is a whole, valid PNG of the promised size. */
export async function fetchImage(
  image: Generation['images'][number],
): Promise<{ pixels: Uint8Array; width: number }> {
  const response = await fetch(image.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
  expect(response.status).toBe(200)
  const bytes = new Uint8Array(await response.arrayBuffer())
  expect(bytes.byteLength).toBe(image.bytes)
  expect(createHash('sha256').update(bytes).digest('hex')).toBe(image.sha256)
  const png = decode(bytes)
  expect(png.width).toBe(image.width)
  expect(png.height).toBe(image.height)
  return { pixels: png.data as Uint8Array, width: png.width }
}

/**
 * Largest per-channel difference between a `size`×`size` image and a reference rendered at twice
 * the size (nearest upscale of the same latent, so every 2×2 block of the reference is one pixel).
 */
export function diffAgainstDouble(
  image: { pixels: Uint8Array; width: number },
  reference: { pixels: Uint8Array; width: number },
): number {
  const size = image.width
  expect(reference.width).toBe(size * 2)
  let max = 0
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 4; c++) {
        const a = image.pixels[(y * size + x) * 4 + c]!
        const b = reference.pixels[(2 * y * 2 * size + 2 * x) * 4 + c]!
        max = Math.max(max, Math.abs(a - b))
      }
    }
  }
  return max
}

/** Polls GET /v1/generations/:id until it is no longer running. */
export async function waitForGeneration(
  workerUrl: string,
  apiKey: string,
  id: string,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<Generation> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const response = await getGeneration(workerUrl, apiKey, id)
    expect(response.status, response.text).toBe(200)
    const generation = response.json as Generation
    if (generation.status !== 'running') return generation
    if (Date.now() > deadline)
      throw new Error(`generation ${id} still running after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * Uploads `totalBytes` of spaces as a chunked body with node:http, which (unlike fetch) sees a
 * response the server sends before the upload ends, as a well-behaved client of a 413 does. Resolves
 * with the status and body, or `reset` when the server closed the connection before answering.
 */
export function chunkedUpload(
  url: string,
  headers: Record<string, string>,
  totalBytes: number,
): Promise<ReadResponse | 'reset'> {
  return new Promise((resolve) => {
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    let sent = 0
    let answered = false
    const req = httpRequest(url, { method: 'POST', headers, timeout: REQUEST_TIMEOUT_MS })
    const pump = () => {
      while (!answered && sent < totalBytes) {
        sent += chunk.length
        if (!req.write(chunk)) {
          req.once('drain', pump)
          return
        }
      }
      if (!answered) req.end()
    }
    req.on('response', (res) => {
      answered = true
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => {
        const text = Buffer.concat(parts).toString()
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        const responseHeaders = new Headers()
        for (const [k, v] of Object.entries(res.headers)) {
          if (typeof v === 'string') responseHeaders.set(k, v)
        }
        resolve({ status: res.statusCode ?? 0, headers: responseHeaders, text, json })
        req.destroy()
      })
      res.on('error', () => resolve('reset'))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', () => {
      if (!answered) resolve('reset')
    })
    pump()
  })
}
