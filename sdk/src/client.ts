/**
 * @module client
 * `createClient()`: the remote client for the piflow edge API (fal-style `{ data, requestId }` results),
 * with retries that never generate twice (one Idempotency-Key per logical call), SSE streaming, and an
 * optional fallback to in-browser generation that is only loaded when it is needed.
 */
import { ApiError, NetworkError, PiflowError } from './errors.ts'
import { apiErrorFrom, backoffDelay, createHttp, jitter, toPiflowError } from './http.ts'
import type { LocalGenerator, LocalOptions } from './local/types.ts'
import { parseSse } from './sse.ts'
import type {
  GeneratedImage,
  GenerateInput,
  Generation,
  ModelInfo,
  RequestOptions,
  Result,
  RetryOptions,
  StreamCallbacks,
  StreamEvent,
} from './types.ts'

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** Base URL of the API, e.g. `https://api.example.com` (the `/v1/…` paths are appended). */
  baseUrl: string
  /** API key, sent as `Authorization: Bearer <key>`. Never ship a long-lived key to browsers. */
  apiKey?: string
  /** Custom fetch (tests, proxies, runtimes without a global fetch). @default globalThis.fetch */
  fetch?: typeof fetch
  /** Retry policy, or just the retry limit. `0` disables retries. @default { limit: 3 } */
  retry?: number | RetryOptions
  /** Per-attempt timeout in ms until the response starts, or `false`. @default 120_000 */
  timeout?: number | false
  /** Extra headers on every request. */
  headers?: Record<string, string>
  /**
   * `'local'`: when the edge is unreachable (network error) or answers that the model should run
   * locally, generate in this page with `@piflow/sdk/local` instead. Never on auth or validation errors.
   * @default false
   */
  fallback?: 'local' | false
  /** Options of the local generator used by `fallback: 'local'`. */
  local?: LocalOptions
}

/** The piflow API client. Every method takes an AbortSignal through its options. */
export interface PiflowClient {
  /**
   * Generates images and resolves when all are ready.
   * @example
   * const { data } = await client.generate({ prompt: 'a red apple', nfe: 4, seed: 7 })
   */
  generate(input: GenerateInput, options?: RequestOptions): Promise<Result<Generation>>
  /**
   * Streams a generation's events (`id`, `progress`, `image`, `done`). Iterate it with `for await`,
   * or pass callbacks and `await stream.done()`.
   */
  stream(
    input: GenerateInput,
    options?: RequestOptions & StreamCallbacks & StreamResumeOptions,
  ): GenerationStream
  /**
   * Streams an earlier generation's events (after `lastEventId` when given), following it until `done`:
   * for a page reload or another device. `stream` already reconnects by itself after a dropped connection.
   * @example
   * for await (const e of client.resume(id, { lastEventId: '2' })) console.log(e.type)
   */
  resume(
    id: string,
    options?: RequestOptions & StreamCallbacks & StreamResumeOptions & { lastEventId?: string },
  ): GenerationStream
  /** Status or result of an earlier generation. */
  get(id: string, options?: RequestOptions): Promise<Result<Generation>>
  /** The models the API serves. */
  models(options?: RequestOptions): Promise<Result<ModelInfo[]>>
}

/** Reconnection of a dropped event stream. */
export interface StreamResumeOptions {
  /**
   * Reconnect with `Last-Event-ID` when the connection drops before `done` (up to `retry.limit` times,
   * with the retry backoff). `false` throws a NetworkError at the first drop instead. @default true
   */
  resume?: boolean
}

/** An async iterable of {@link StreamEvent}s that can also be awaited as a whole. */
export interface GenerationStream extends AsyncIterable<StreamEvent> {
  /** Runs the stream to its end (if nobody iterates it) and resolves with the final result. */
  done(): Promise<Result<Generation>>
}

/**
 * Error codes with which the edge says it cannot run the model now, so the browser may: an explicit
 * `run_locally`, or no inference backend configured / reachable (after retries).
 */
export const LOCAL_FALLBACK_CODES: readonly string[] = [
  'run_locally',
  'no_backends',
  'backends_unavailable',
]

const DEFAULT_RETRY: Required<RetryOptions> = {
  limit: 3,
  delay: 500,
  maxDelay: 15_000,
  maxRetryAfter: 60_000,
}

/**
 * Creates a client for the piflow API.
 * @example
 * const client = createClient({ baseUrl: 'https://api.example.com', apiKey })
 * const { data, backend } = await client.generate({ prompt: 'a cat', nfe: 4, seed: 1 })
 */
export const createClient = (options: ClientOptions): PiflowClient => {
  if (!options?.baseUrl) throw new PiflowError('createClient: `baseUrl` is required')
  const retry = options.retry ?? {}
  const normalisedRetry: Required<RetryOptions> = {
    ...DEFAULT_RETRY,
    ...(typeof retry === 'number' ? { limit: retry } : retry),
  }
  const http = createHttp({
    baseUrl: options.baseUrl.replace(/\/*$/, '/'),
    apiKey: options.apiKey,
    fetch: options.fetch,
    retry: normalisedRetry,
    timeout: options.timeout ?? 120_000,
    headers: options.headers ?? {},
  })

  let local: Promise<LocalGenerator> | undefined
  /** The local generator, imported on first use so the root entry stays free of inference code. */
  const loadLocal = () => {
    local ??= import('./local/index.ts').then((m) => m.createLocalGenerator(options.local))
    return local
  }
  const shouldFallback = (error: unknown, signal?: AbortSignal) =>
    options.fallback === 'local' &&
    !signal?.aborted &&
    (error instanceof NetworkError ||
      (error instanceof ApiError && LOCAL_FALLBACK_CODES.includes(error.code)))

  const post = (input: GenerateInput, options: RequestOptions, accept: string) =>
    http.post('v1/generations', {
      json: input,
      headers: { accept, 'idempotency-key': options.idempotencyKey ?? randomId() },
      signal: options.signal ?? null,
    })

  const generate = async (input: GenerateInput, opts: RequestOptions = {}) => {
    const started = now()
    try {
      const response = await post(input, opts, 'application/json')
      const body = await readJson(response)
      return toResult(toGeneration(body), response, body, started)
    } catch (error) {
      const mapped = toPiflowError(error)
      if (!shouldFallback(mapped, opts.signal)) throw mapped
      return (await loadLocal()).generate(input, opts)
    }
  }

  /** `GET /v1/generations/:id` as an event stream, from after `lastEventId` (all events without one). */
  const follow = (id: string, lastEventId: string | undefined, opts: RequestOptions) =>
    http.get(`v1/generations/${encodeURIComponent(id)}`, {
      headers: {
        accept: 'text/event-stream',
        ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }),
      },
      signal: opts.signal ?? null,
    })

  /**
   * The events of one generation: from the POST's response, or (`resume`) from an id. When the
   * connection drops before `done`, reconnects with `Last-Event-ID` (up to `retry.limit` times, with the
   * retry backoff), so a flaky network costs a reconnect, never a lost or duplicated event.
   */
  async function* streamEvents(
    start: { input: GenerateInput } | { id: string; lastEventId?: string },
    opts: RequestOptions & StreamCallbacks & StreamResumeOptions,
  ): AsyncGenerator<StreamEvent> {
    const emit = (event: StreamEvent) => {
      opts.onEvent?.(event)
      if (event.type === 'progress') opts.onProgress?.(event)
      if (event.type === 'image') opts.onImage?.(event.image)
      return event
    }
    const started = now()
    let id = 'id' in start ? start.id : undefined
    let lastEventId = 'id' in start ? start.lastEventId : undefined
    let response: Response
    try {
      response =
        'input' in start
          ? await post(start.input, opts, 'text/event-stream')
          : await follow(start.id, lastEventId, opts)
    } catch (error) {
      const mapped = toPiflowError(error)
      if (!('input' in start) || !shouldFallback(mapped, opts.signal)) throw mapped
      yield* localEvents(await loadLocal(), start.input, opts, emit)
      return
    }
    const limit = opts.resume === false ? 0 : normalisedRetry.limit
    for (let reconnects = 0; ; reconnects++) {
      if (response.status === 204) {
        // Nothing after Last-Event-ID: the stream had ended; the stored result is the outcome.
        const result = await getJson(
          `v1/generations/${encodeURIComponent(id ?? '')}`,
          opts,
          toGeneration,
        )
        yield emit({ type: 'done', result })
        return
      }
      if (!response.body) throw new PiflowError('The stream response has no body')
      let dropped: PiflowError
      try {
        for await (const message of parseSse(response.body)) {
          if (message.id !== undefined) lastEventId = message.id
          const data = parseJson(message.data)
          // The stream itself was a 200; the failed generation's own status is not sent, so 500.
          if (message.event === 'error') throw apiErrorFrom(500, response.headers, data)
          if (message.event === 'id') {
            id = String(data.id)
            yield emit({ ...data, type: 'id', id })
          } else if (message.event === 'progress') yield emit({ type: 'progress', ...data })
          else if (message.event === 'image')
            yield emit({ type: 'image', image: toImage(data.image ?? data) })
          else if (message.event === 'done') {
            yield emit({
              type: 'done',
              result: toResult(toGeneration(data), response, data, started),
            })
            return
          }
        }
        dropped = new NetworkError('The event stream ended before `done`')
      } catch (error) {
        const mapped = toPiflowError(error)
        if (!(mapped instanceof NetworkError)) throw mapped
        dropped = mapped
      }
      // The connection dropped mid-generation. Nothing is lost server-side: follow it by id.
      if (id === undefined || reconnects >= limit || opts.signal?.aborted) {
        const how = id === undefined ? 'client.get' : `client.resume('${id}')`
        throw new NetworkError(`${dropped.message}; resume with ${how}`, { cause: dropped })
      }
      await sleep(backoff(normalisedRetry, reconnects + 1), opts.signal)
      try {
        response = await follow(id, lastEventId, opts)
      } catch (error) {
        throw toPiflowError(error)
      }
    }
  }

  /** Wraps an event generator as a {@link GenerationStream}. */
  const asStream = (events: AsyncGenerator<StreamEvent>): GenerationStream => {
    let last: Result<Generation> | undefined
    const iterate = async function* () {
      for await (const event of events) {
        if (event.type === 'done') last = event.result
        yield event
      }
    }
    const iterator = iterate()
    let drained: Promise<Result<Generation>> | undefined
    return {
      [Symbol.asyncIterator]: () => iterator,
      done: () => {
        drained ??= (async () => {
          for await (const _ of iterator);
          if (!last) throw new PiflowError('The stream ended without a result')
          return last
        })()
        return drained
      },
    }
  }

  const getJson = async <T>(path: string, opts: RequestOptions, map: (body: Json) => T) => {
    const started = now()
    try {
      const response = await http.get(path, { signal: opts.signal ?? null })
      const body = await readJson(response)
      return toResult(map(body), response, body, started)
    } catch (error) {
      throw toPiflowError(error)
    }
  }

  return {
    generate,
    stream: (input, opts = {}) => asStream(streamEvents({ input }, opts)),
    resume: (id, opts = {}) =>
      asStream(
        streamEvents(
          { id, ...(opts.lastEventId === undefined ? {} : { lastEventId: opts.lastEventId }) },
          opts,
        ),
      ),
    get: (id, opts = {}) => getJson(`v1/generations/${encodeURIComponent(id)}`, opts, toGeneration),
    models: (opts = {}) => getJson('v1/models', opts, (body) => body.data),
  }
}

/**
 * A local generation as stream events, yielded while it runs: `id` once the request is normalised,
 * `progress` per NFE, then `image`s and `done` (the same sequence as the API's stream).
 */
async function* localEvents(
  local: LocalGenerator,
  input: GenerateInput,
  opts: RequestOptions,
  emit: (event: StreamEvent) => StreamEvent,
): AsyncGenerator<StreamEvent> {
  const queue: StreamEvent[] = []
  let wake: (() => void) | undefined
  let settled = false
  const push = (event: StreamEvent) => {
    queue.push(event)
    wake?.()
  }
  const running = local
    .generate(input, {
      ...opts,
      onStart: (info) => push({ type: 'id', ...info }),
      onProgress: (p) => push({ type: 'progress', ...p }),
    })
    .finally(() => {
      settled = true
      wake?.()
    })
  running.catch(() => {}) // rethrown by the await below, after the queued events
  while (true) {
    while (queue.length > 0) yield emit(queue.shift()!)
    if (settled) break
    await new Promise<void>((resolve) => {
      wake = resolve
    })
  }
  const result = await running
  for (const image of result.data.images) yield emit({ type: 'image', image })
  yield emit({ type: 'done', result })
}

// biome-ignore lint/suspicious/noExplicitAny: wire JSON, narrowed field by field below
type Json = any

const now = () => performance.now()

const parseJson = (text: string): Json => {
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw new PiflowError('The API sent malformed JSON', { cause })
  }
}

const readJson = async (response: Response) => parseJson(await response.text())

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

const toImage = (wire: Json): GeneratedImage => {
  const { data, ...image } = wire
  return data ? { ...image, data: fromBase64(data) } : image
}

const toGeneration = (body: Json): Generation => ({
  ...body,
  images: (body.images ?? []).map(toImage),
})

const toResult = <T>(data: T, response: Response, body: Json, started: number): Result<T> => ({
  data,
  requestId: body?.requestId ?? response.headers.get('x-request-id') ?? '',
  backend: 'remote',
  // Server stage timings, with totalMs as the caller saw it (network and retries included).
  timings: { ...body?.timings, totalMs: now() - started },
})

/** The retry policy's delay before reconnect `attempt` (1-based), as ky waits between retries. */
const backoff = (retry: Required<RetryOptions>, attempt: number) =>
  jitter(Math.min(backoffDelay(retry, attempt), retry.maxDelay))

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
