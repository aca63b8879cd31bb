/**
 * @module client
 * `createClient()`: the remote client for the piflow edge API (fal-style `{ data, requestId }` results),
 * composed as fal-js composes its client: the HTTP layer with retries that never generate twice
 * (http.ts: one Idempotency-Key per logical call), the wire mapping (wire.ts), streaming with
 * reconnects (stream.ts) and the optional fallback to in-browser generation, only loaded when it is
 * needed (fallback.ts).
 */
import { PiflowError } from './errors.ts'
import { createLocalLoader, fallsBack } from './fallback.ts'
import { createHttp, toPiflowError } from './http.ts'
import type { LocalOptions } from './local/types.ts'
import { createStreaming } from './stream.ts'
import type {
  GenerateInput,
  Generation,
  GenerationStream,
  ModelInfo,
  RequestOptions,
  Result,
  RetryOptions,
  StreamCallbacks,
  StreamResumeOptions,
} from './types.ts'
import {
  generationPath,
  getJson,
  now,
  postGeneration,
  readJson,
  toGeneration,
  toResult,
} from './wire.ts'

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
  const loadLocal = createLocalLoader(options)

  const generate = async (input: GenerateInput, opts: RequestOptions = {}) => {
    const started = now()
    try {
      const response = await postGeneration(http, input, opts, 'application/json')
      const body = await readJson(response)
      return toResult(toGeneration(body), response, body, started)
    } catch (error) {
      const mapped = toPiflowError(error)
      if (!fallsBack(options, mapped, opts.signal)) throw mapped
      return (await loadLocal()).generate(input, opts)
    }
  }

  return {
    generate,
    ...createStreaming(http, normalisedRetry, options, loadLocal),
    get: (id, opts = {}) => getJson(http, generationPath(id), opts, toGeneration),
    models: (opts = {}) => getJson(http, 'v1/models', opts, (body) => body.data),
  }
}
