/**
 * @module types
 * Public types of `@piflow/sdk`. Types only: importing this file adds no code to a bundle.
 */

/** Which path produced a result: the edge API, or the browser (onnxruntime-web provider that ran). */
export type Backend = 'remote' | 'webgpu' | 'wasm' | 'cpu'

/** Output image encodings the API accepts. */
export type ImageFormat = 'png'

/** Input of one generation (the body of `POST /v1/generations`). */
export interface GenerateInput {
  prompt: string
  /** Model id. @default 'piflow-emoji' (the server's default) */
  model?: string
  /** Network evaluations (one per policy segment); one of the model's `nfeOptions`. @default the model's default */
  nfe?: number
  /** Integer 0 … 2^32−1. Image i of a request uses seed + i. @default random */
  seed?: number
  /** Square output size in pixels; one of the model's `image.outputSizes`. @default native size */
  size?: number
  /** Guidance scale where the model supports one. @default the model's */
  guidance?: number
  /** Number of images. @default 1 */
  count?: number
  /** @default 'png' */
  format?: ImageFormat
  /** `url`: signed image URLs only; `base64`: also the PNG bytes inline (`image.data`). @default 'url' */
  response?: 'url' | 'base64'
  /** Streams only: attach small previews to `progress` events. @default true */
  preview?: boolean
  /**
   * An https URL the API POSTs this generation's events to (Standard Webhooks signatures, with the
   * key's webhook secret); `http://localhost` only against a server in local mode.
   */
  webhook?: string
  /** Which events go to `webhook`. @default ['completed'] */
  webhookEvents?: ('start' | 'progress' | 'completed')[]
}

/** Per-call options; every call can be aborted. */
export interface RequestOptions {
  signal?: AbortSignal
  /** Overrides the automatic per-call `Idempotency-Key` (reuse one to safely replay a call across reloads). */
  idempotencyKey?: string
}

/** Options of a call that starts a generation. */
export interface GenerateOptions extends RequestOptions {
  /**
   * When `signal` aborts after the API has told the generation's id (a stream's `id` event; for
   * `generate`, the answer or `onProgress`'s stream), cancel the generation on the server too
   * (`POST /v1/generations/:id/cancel`, best effort: its failure is ignored). `false` leaves it
   * running, to `get` or `resume` later. @default true
   */
  cancelOnAbort?: boolean
}

/** One generated image. */
export interface GeneratedImage {
  index: number
  /** The seed of this image (request seed + index, mod 2^32). */
  seed: number
  width: number
  height: number
  /** MIME type, e.g. `image/png`. */
  contentType: string
  /** Signed, expiring URL of the image (remote results). */
  url?: string
  sha256?: string
  /**
   * Encoded image bytes: always for local results, for remote ones with `response: 'base64'`. Backed
   * by an `ArrayBuffer`, so `new Blob([image.data])` type-checks; or use `toBlob(image)`.
   */
  data?: Uint8Array<ArrayBuffer>
}

/** A generation, as `POST /v1/generations` and `GET /v1/generations/:id` return it. */
export interface Generation {
  id: string
  /** `queued`: accepted while every backend is busy (see `queuePosition`). */
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled'
  /** While `queued`: its place in the model's queue (1: next). */
  queuePosition?: number
  model: string
  prompt: string
  nfe: number
  seed: number
  /** Square output size in pixels (above the model's native size: an upscale of the native image). */
  size: number
  guidance: number
  count: number
  images: GeneratedImage[]
  /** Which path produced it. */
  path: Backend
  /** Where the policy integration ran: `edge`/`backend` remotely, `webgpu`/`cpu` in the browser. */
  integration: 'edge' | 'backend' | 'webgpu' | 'cpu'
  /** True when the API served it from its cache. */
  cached: boolean
  progress: { step: number; nfe: number }
  /** Server-side stage timings in ms. */
  timings: Record<string, number>
  error: { code: string; message: string } | null
  createdAt?: string
  completedAt?: string | null
  requestId?: string
  backends?: string[]
}

/** Stage timings in milliseconds; `totalMs` is measured by the SDK around the whole call. */
export interface Timings {
  totalMs: number
  [stage: string]: number
}

/** Result envelope of every call (fal style), saying which path produced it. */
export interface Result<T> {
  data: T
  requestId: string
  backend: Backend
  timings: Timings
  /** True when the API answered with the stored result of an earlier call with the same Idempotency-Key. */
  replayed?: boolean
  /** Local results: why the provider that ran is not the first one tried (e.g. a software WebGPU adapter). */
  reason?: string
}

/** `client.submit()`'s answer (`Prefer: respond-async`): the generation runs on; follow it by id. */
export interface Submission {
  id: string
  status: Generation['status']
  /** Absolute URLs of the generation: its record (`get`), its events (`stream`) and `cancel`. */
  urls: { get: string; stream: string; cancel: string }
}

/** A file of a model, with the URL the SDK downloads it from. */
export interface ModelFile {
  key: string
  role: string
  sha256: string
  bytes: number
  url: string
}

/** A model the API serves: its manifest (schema in `@piflow/models`) and downloadable files. */
export interface ModelInfo {
  id: string
  manifest: Record<string, unknown>
  files: ModelFile[]
}

/**
 * Events of `client.stream()`, in order: `id`, `queued`×(0…n, while waiting for a backend),
 * `progress`×nfe, `image`×count, `done`; or `canceled` (last) when the generation was cancelled.
 * A cached result sends its `progress` events too, at once and without previews (the result's
 * `data.cached` says it was served from the cache).
 */
export type StreamEvent =
  | { type: 'id'; id: string; seed?: number; nfe?: number; model?: string; count?: number }
  | { type: 'queued'; id?: string; queuePosition: number }
  | { type: 'canceled'; id: string }
  | {
      type: 'progress'
      step: number
      nfe: number
      /** σ reached after this step. */
      sigma?: number
      /** PNG data URI of the current estimate (remote streams with `preview`; not on cache hits). */
      preview?: string
    }
  | { type: 'image'; image: GeneratedImage }
  | { type: 'done'; result: Result<Generation> }

/** An async iterable of {@link StreamEvent}s that can also be awaited as a whole. */
export interface GenerationStream extends AsyncIterable<StreamEvent> {
  /**
   * Runs the stream to its end (if nobody iterates it) and resolves with the final result; rejects
   * with a `GenerationCanceledError` when the generation was cancelled.
   */
  done(): Promise<Result<Generation>>
}

/** Reconnection of a dropped event stream. */
export interface StreamResumeOptions {
  /**
   * Reconnect with `Last-Event-ID` when the connection drops before `done` (up to `retry.limit` times,
   * with the retry backoff). `false` throws a NetworkError at the first drop instead. @default true
   */
  resume?: boolean
}

/** Callbacks for `client.stream()`, an alternative to iterating it. */
export interface StreamCallbacks {
  onEvent?: (event: StreamEvent) => void
  onProgress?: (event: Extract<StreamEvent, { type: 'progress' }>) => void
  onImage?: (image: GeneratedImage) => void
}

/** Retry policy: exponential backoff with ±25 % jitter, honouring `Retry-After`. */
export interface RetryOptions {
  /** Retries after the first attempt. @default 3 */
  limit?: number
  /** First backoff delay in ms, doubled per retry. @default 500 */
  delay?: number
  /** Cap of one backoff delay in ms. @default 15_000 */
  maxDelay?: number
  /** Cap of a server-requested `Retry-After` wait in ms. @default 60_000 */
  maxRetryAfter?: number
}
