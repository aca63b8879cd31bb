/**
 * @module wire
 * The API's wire, mapped onto the SDK's types: the endpoint calls (through the ky instance of a
 * client) and their JSON bodies as `Generation`s, images (base64 → bytes) and `{ data, requestId }`
 * results.
 */
import type { KyInstance } from 'ky'
import { PiflowError } from './errors.ts'
import { toPiflowError } from './http.ts'
import type { GeneratedImage, GenerateInput, Generation, RequestOptions, Result } from './types.ts'

// biome-ignore lint/suspicious/noExplicitAny: wire JSON, narrowed field by field below
export type Json = any

export const now = () => performance.now()

export const parseJson = (text: string): Json => {
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw new PiflowError('The API sent malformed JSON', { cause })
  }
}

export const readJson = async (response: Response) => parseJson(await response.text())

/** A random UUID v4; `crypto.randomUUID` is missing outside secure contexts (plain-http pages). */
const randomId = () =>
  crypto.randomUUID?.() ??
  // RFC 4122 §4.4 layout from 16 random bytes.
  [...crypto.getRandomValues(new Uint8Array(16))]
    .map((b, i) => (i === 6 ? (b & 15) | 64 : i === 8 ? (b & 63) | 128 : b))
    .map((b, i) => ([4, 6, 8, 10].includes(i) ? '-' : '') + b.toString(16).padStart(2, '0'))
    .join('')

const fromBase64 = (text: string) => {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

export const toImage = (wire: Json): GeneratedImage => {
  const { data, ...image } = wire
  return data ? { ...image, data: fromBase64(data) } : image
}

export const toGeneration = (body: Json): Generation => ({
  ...body,
  images: (body.images ?? []).map(toImage),
})

export const toResult = <T>(
  data: T,
  response: Response,
  body: Json,
  started: number,
): Result<T> => ({
  data,
  requestId: body?.requestId ?? response.headers.get('x-request-id') ?? '',
  backend: 'remote',
  // Server stage timings, with totalMs as the caller saw it (network and retries included).
  timings: { ...body?.timings, totalMs: now() - started },
})

/** The path of one generation. */
export const generationPath = (id: string) => `v1/generations/${encodeURIComponent(id)}`

/** `POST /v1/generations`, with one automatic Idempotency-Key per logical call (retries reuse it). */
export const postGeneration = (
  http: KyInstance,
  input: GenerateInput,
  options: RequestOptions,
  accept: string,
) =>
  http.post('v1/generations', {
    json: input,
    headers: { accept, 'idempotency-key': options.idempotencyKey ?? randomId() },
    signal: options.signal ?? null,
  })

/** `GET /v1/generations/:id` as an event stream, after `lastEventId` (all events without one). */
export const followGeneration = (
  http: KyInstance,
  id: string,
  lastEventId: string | undefined,
  options: RequestOptions,
) =>
  http.get(generationPath(id), {
    headers: {
      accept: 'text/event-stream',
      ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }),
    },
    signal: options.signal ?? null,
  })

/** A JSON GET, its body mapped by `map` into a result. */
export const getJson = async <T>(
  http: KyInstance,
  path: string,
  options: RequestOptions,
  map: (body: Json) => T,
) => {
  const started = now()
  try {
    const response = await http.get(path, { signal: options.signal ?? null })
    const body = await readJson(response)
    return toResult(map(body), response, body, started)
  } catch (error) {
    throw toPiflowError(error)
  }
}
