/**
 * @module errors
 * One base class for everything the SDK throws, with typed subclasses (ARCHITECTURE.md §6). The HTTP
 * library's own errors are mapped onto these at the boundary, so it never appears in the public types;
 * the original is kept as `cause` for debugging.
 */

/** Base class of every error the SDK throws (except a caller's abort: `signal.reason`, rethrown as is). */
export class PiflowError extends Error {
  override name = 'PiflowError'

  /** Brand that survives duplicated bundles and realms, where `instanceof` does not. */
  get isPiflowError(): true {
    return true
  }
}

/** The API answered with a non-2xx status: `{ error: { code, message }, requestId }`. */
export class ApiError extends PiflowError {
  override name = 'ApiError'
  readonly status: number
  /** Stable machine-readable code from the response body, e.g. `unauthorized`, `rate_limited`. */
  readonly code: string
  readonly requestId: string | undefined
  /** The parsed response body as received. */
  readonly body: unknown
  /**
   * Seconds the server asked to wait (`Retry-After`, e.g. on 429 `rate_limited` or 503 `queue_full`),
   * when it sent one. Set after the SDK's own retries gave up.
   */
  readonly retryAfter: number | undefined

  constructor(args: {
    message: string
    status: number
    code: string
    requestId?: string | undefined
    body?: unknown
    retryAfter?: number | undefined
    cause?: unknown
  }) {
    super(args.message, { cause: args.cause })
    this.status = args.status
    this.code = args.code
    this.requestId = args.requestId
    this.body = args.body
    this.retryAfter = args.retryAfter
  }
}

/**
 * HTTP 422 `idempotency_key_reused`: the `Idempotency-Key` was already used with a different body.
 * Not a problem of the input itself: use a new key (or the original body).
 */
export class IdempotencyKeyReusedError extends ApiError {
  override name = 'IdempotencyKeyReusedError'
}

/** One invalid input field of a 422 response. */
export interface FieldError {
  /** Dotted path of the offending field, e.g. `nfe` or `size.width`. */
  path: string
  message: string
  code?: string
}

/** The API rejected the input (HTTP 422); `fieldErrors` says which fields and why. */
export class ValidationError extends ApiError {
  override name = 'ValidationError'
  readonly fieldErrors: FieldError[]

  constructor(args: ConstructorParameters<typeof ApiError>[0] & { fieldErrors: FieldError[] }) {
    super(args)
    this.fieldErrors = args.fieldErrors
  }
}

/** The generation was cancelled (by `client.cancel`, an aborted call, or another client with its key). */
export class GenerationCanceledError extends PiflowError {
  override name = 'GenerationCanceledError'
  readonly id: string

  constructor(id: string) {
    super(`Generation ${id} was canceled`)
    this.id = id
  }
}

/** No response arrived within the configured `timeout` (after any retries). */
export class TimeoutError extends PiflowError {
  override name = 'TimeoutError'
}

/** The server could not be reached (DNS, refused or reset connection, offline), after any retries. */
export class NetworkError extends PiflowError {
  override name = 'NetworkError'
  /** The URL that could not be reached, when known. */
  readonly url: string | undefined
  /** How many attempts were made (1 + retries), when known. */
  readonly attempts: number | undefined

  constructor(message: string, options: { cause?: unknown; url?: string; attempts?: number } = {}) {
    super(message, { cause: options.cause })
    this.url = options.url
    this.attempts = options.attempts
  }
}

/** In-browser generation failed: model download, integrity check, runtime or provider errors. */
export class LocalInferenceError extends PiflowError {
  override name = 'LocalInferenceError'
  /** e.g. `integrity_mismatch`, `download_failed`, `no_provider`, `runtime_missing`, `invalid_input`. */
  readonly code: string

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** True for any error thrown by the SDK, even from another copy of it. */
export const isPiflowError = (error: unknown): error is PiflowError =>
  error instanceof PiflowError || (error as PiflowError | null)?.isPiflowError === true

/** True for an {@link ApiError} (including its subclasses). */
export const isApiError = (error: unknown): error is ApiError =>
  error instanceof ApiError || (isPiflowError(error) && 'status' in error && 'code' in error)
