/**
 * @module errors
 * The backend's one error type. Every failure a client can cause or observe becomes a `BackendError`
 * with an HTTP status and a stable code; the app renders it as `{ error: { code, message }, requestId }`.
 */

/** Stable error codes of the backend protocol (documented in PROTOCOL.md). */
export type BackendErrorCode =
  | 'unauthorized'
  | 'not_found'
  | 'model_not_found'
  | 'request_not_found'
  | 'method_not_allowed'
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'malformed_safetensors'
  | 'missing_tensor'
  | 'unexpected_tensor'
  | 'invalid_dtype'
  | 'invalid_shape'
  | 'batch_too_large'
  | 'non_finite'
  | 'invalid_value'
  | 'invalid_metadata'
  | 'queue_full'
  | 'timeout'
  | 'request_timeout'
  | 'cancelled'
  | 'shutting_down'
  | 'not_ready'
  | 'inference_failed'
  | 'internal'

/** An error with an HTTP status and a stable protocol code. */
export class BackendError extends Error {
  override name = 'BackendError'
  readonly status: number
  readonly code: BackendErrorCode
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Record<string, string>

  constructor(
    status: number,
    code: BackendErrorCode,
    message: string,
    options?: { headers?: Record<string, string>; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.status = status
    this.code = code
    this.headers = options?.headers ?? {}
  }
}

/** 503 `QUEUE_FULL`: the model's queue is at its bound; retry after `retryAfterSeconds`. */
export class QueueFullError extends BackendError {
  override name = 'QueueFullError'
  readonly retryAfterSeconds: number

  constructor(modelId: string, retryAfterSeconds: number) {
    super(503, 'queue_full', `the queue for model "${modelId}" is full; retry later`, {
      headers: { 'Retry-After': String(retryAfterSeconds) },
    })
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/** 400 for a request whose tensors do not match the model (codes name the problem). */
export class InvalidInputError extends BackendError {
  override name = 'InvalidInputError'
  /** The tensor or metadata field to blame. */
  readonly field: string | undefined

  constructor(code: BackendErrorCode, message: string, field?: string) {
    super(400, code, message)
    this.field = field
  }
}
