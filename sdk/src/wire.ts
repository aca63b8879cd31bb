/**
 * @module wire
 * The API's wire, mapped onto the SDK's types: the endpoint calls (through the HTTP layer of a
 * client) and their JSON bodies as `Generation`s, images (base64 → bytes) and `{ data, requestId }`
 * results.
 */
import { PiflowError } from './errors.ts'
import { type Http, toPiflowError } from './http.ts'
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

export const readJson = async (response: Response) =>
  parseJson(
    await response.text().catch((error) => {
      throw toPiflowError(error)
    }),
  )

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
  replayed: response.headers.get('idempotent-replayed') === 'true',
  // Server stage timings, with totalMs as the caller saw it (network and retries included).
  timings: { ...body?.timings, totalMs: now() - started },
})

/** The path of one generation. */
export const generationPath = (id: string) => `v1/generations/${encodeURIComponent(id)}`

/** `POST /v1/generations`, with one automatic Idempotency-Key per logical call (retries reuse it). */
export const postGeneration = (
  http: Http,
  input: GenerateInput,
  options: RequestOptions,
  accept: string,
  prefer?: string,
) =>
  http('v1/generations', {
    method: 'post',
    json: input,
    headers: {
      accept,
      'idempotency-key': options.idempotencyKey ?? randomId(),
      ...(prefer ? { prefer } : {}),
    },
    signal: options.signal,
  })

/** `GET /v1/generations/:id` as an event stream, after `lastEventId` (all events without one). */
export const followGeneration = (
  http: Http,
  id: string,
  lastEventId: string | undefined,
  options: RequestOptions,
) =>
  http(generationPath(id), {
    headers: {
      accept: 'text/event-stream',
      ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }),
    },
    signal: options.signal,
  })

/** A JSON call (GET unless `call` says otherwise), its body mapped by `map` into a result. */
export const callJson = async <T>(
  http: Http,
  path: string,
  options: RequestOptions,
  map: (body: Json) => T,
  call: { method?: 'post'; json?: unknown; conflictIsFinal?: boolean } = {},
) => {
  const started = now()
  const response = await http(path, { ...call, signal: options.signal })
  const body = await readJson(response)
  return toResult(map(body), response, body, started)
}

/** `POST /v1/generations/:id/cancel`: the record, `status: 'canceled'` (409 when it had finished). */
export const cancelGeneration = (http: Http, id: string, options: RequestOptions) =>
  callJson(http, `${generationPath(id)}/cancel`, options, toGeneration, {
    method: 'post',
    conflictIsFinal: true,
  })
