/**
 * @module client
 * `createClient()`: the remote client for the piflow edge API (fal-style `{ data, requestId }` results),
 * composed as fal-js composes its client: the HTTP layer with retries that never generate twice
 * (http.ts: one Idempotency-Key per logical call), the wire mapping (wire.ts), streaming with
 * reconnects (stream.ts) and the optional fallback to in-browser generation, only loaded when it is
 * needed (fallback.ts).
 */
import { createAuth, type TokenProvider } from './auth.ts'
import { GenerationCanceledError, PiflowError } from './errors.ts'
import { asStream } from './events.ts'
import { createLocalLoader, fallsBack } from './fallback.ts'
import { createHttp } from './http.ts'
import type { LocalOptions } from './local/types.ts'
import type { StreamOptions, StreamStart } from './stream.ts'
import type {
  GenerateInput,
  GenerateOptions,
  Generation,
  GenerationStream,
  ModelInfo,
  RequestOptions,
  Result,
  RetryOptions,
  StreamCallbacks,
  StreamResumeOptions,
  Submission,
} from './types.ts'
import {
  callJson,
  cancelGeneration,
  generationPath,
  now,
  postGeneration,
  readJson,
  toGeneration,
  toResult,
} from './wire.ts'

/** Options of {@link createClient}. */
export interface ClientOptions {
  /**
   * Base URL of the API, e.g. `https://api.example.com` (the `/v1/…` paths are appended; a base that
   * already ends in `/v1`, as the start command prints it, works too).
   */
  baseUrl: string
  /** API key, sent as `Authorization: Bearer <key>`. Never ship a long-lived key to browsers. */
  apiKey?: string
  /** A short-lived client token (`POST /v1/tokens`), sent like a key; for browsers. */
  token?: string
  /**
   * Fetches client tokens on demand (from your own server, which holds the key): called on first
   * use, again shortly before `expiresAt` and once after a 401 `token_expired`; concurrent calls
   * share one refresh. Takes precedence over `token` and `apiKey`.
   */
  tokenProvider?: TokenProvider
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
   * Generates images and resolves when all are ready (rejects with GenerationCanceledError when the
   * generation was cancelled). With `onProgress`, or a `signal` (so that an abort can cancel the
   * generation on the server), it runs over the event stream, which tells the id at once; otherwise
   * over one JSON request.
   * @example
   * const { data } = await client.generate({ prompt: 'a red apple', nfe: 4, seed: 7 })
   */
  generate(
    input: GenerateInput,
    options?: GenerateOptions & Pick<StreamCallbacks, 'onProgress'>,
  ): Promise<Result<Generation>>
  /**
   * Streams a generation's events (`id`, `queued`, `progress`, `image`, `done` or `canceled`).
   * Iterate it with `for await`, or pass callbacks and `await stream.done()`.
   */
  stream(
    input: GenerateInput,
    options?: GenerateOptions & StreamCallbacks & StreamResumeOptions,
  ): GenerationStream
  /**
   * Starts a generation and answers at once (`Prefer: respond-async`, 202) with its id and URLs;
   * follow it with `get`, `resume` or `cancel`.
   */
  submit(input: GenerateInput, options?: RequestOptions): Promise<Result<Submission>>
  /**
   * Cancels a queued or running generation: resolves with its record (`status: 'canceled'`). A
   * finished one rejects with ApiError 409 `generation_finished`, an unknown one 404.
   */
  cancel(id: string, options?: RequestOptions): Promise<Result<Generation>>
  /**
   * Streams an earlier generation's events (after `lastEventId` when given), following it until `done`:
   * for a page reload or another device. `stream` already reconnects by itself after a dropped connection.
   * Aborting it stops following; it cancels the generation only with `cancelOnAbort: true`.
   * @example
   * for await (const e of client.resume(id, { lastEventId: '2' })) console.log(e.type)
   */
  resume(
    id: string,
    options?: GenerateOptions & StreamCallbacks & StreamResumeOptions & { lastEventId?: string },
  ): GenerationStream
  /** Status or result of an earlier generation. */
  get(id: string, options?: RequestOptions): Promise<Result<Generation>>
  /** The models the API serves. */
  models(options?: RequestOptions): Promise<Result<ModelInfo[]>>
}

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
    baseUrl: options.baseUrl.replace(/(\/v1)?\/*$/, '/'),
    auth: createAuth(options),
    fetch: options.fetch,
    retry: normalisedRetry,
    timeout: options.timeout ?? 120_000,
    headers: options.headers ?? {},
  })
  const loadLocal = createLocalLoader(options)
  // Streaming (SSE parser, reconnects) is a separate chunk, imported by the first stream.
  let streaming: Promise<ReturnType<typeof import('./stream.ts').createStreaming>> | undefined
  const open = (start: StreamStart, opts: StreamOptions) =>
    asStream(
      (async function* () {
        streaming ??= import('./stream.ts').then((m) =>
          m.createStreaming(http, normalisedRetry, options, loadLocal),
        )
        // A chunk that failed to load (offline) is asked for again by the next stream.
        yield* (
          await streaming.catch((error) => {
            streaming = undefined
            throw error
          })
        )(start, opts)
      })(),
    )
  const stream: PiflowClient['stream'] = (input, opts = {}) => open({ input }, opts)

  const generate: PiflowClient['generate'] = async (input, opts = {}) => {
    // The stream tells the id before the result, so progress can be reported and an abort can
    // cancel the generation; without previews unless asked for.
    if (opts.onProgress || (opts.signal && opts.cancelOnAbort !== false)) {
      return stream({ preview: false, ...input }, opts).done()
    }
    const started = now()
    try {
      const response = await postGeneration(http, input, opts, 'application/json')
      const body = await readJson(response)
      // Cancelled meanwhile (by `cancel`, or another client with the key): as the stream's done().
      if (body.status === 'canceled') throw new GenerationCanceledError(body.id)
      return toResult(toGeneration(body), response, body, started)
    } catch (error) {
      if (!fallsBack(options, error, opts.signal)) throw error
      return (await loadLocal()).generate(input, opts)
    }
  }

  return {
    generate,
    stream,
    resume: (id, { lastEventId, ...opts } = {}) =>
      open(lastEventId === undefined ? { id } : { id, lastEventId }, opts),
    submit: async (input, opts = {}) => {
      const started = now()
      const response = await postGeneration(http, input, opts, 'application/json', 'respond-async')
      const body = await readJson(response)
      // A server that ignores the preference answers 200 with the finished record: same fields.
      const path = `${http.baseUrl}${generationPath(body.id)}`
      const urls = body.urls ?? { get: path, stream: path, cancel: `${path}/cancel` }
      return toResult({ id: body.id, status: body.status, urls }, response, body, started)
    },
    cancel: (id, opts = {}) => cancelGeneration(http, id, opts),
    get: (id, opts = {}) => callJson(http, generationPath(id), opts, toGeneration),
    models: (opts = {}) => callJson(http, 'v1/models', opts, (body) => body.data),
  }
}
