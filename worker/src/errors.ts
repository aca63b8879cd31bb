/**
 * @module errors
 * One base class for every error the API returns on purpose; `onError` (index.ts) renders any of them
 * as `{ error: { code, message }, requestId }` with the class's status. Codes are stable API surface.
 */
import type { ContentfulStatusCode } from 'hono/utils/http-status'

/** A field-level validation problem (422 bodies list them under `error.fields`). */
export interface FieldError {
  path: string
  message: string
}

/** Base of every error the worker renders: HTTP status + stable machine-readable code. */
export class ApiError extends Error {
  override readonly name: string = 'ApiError'
  readonly status: ContentfulStatusCode
  readonly code: string
  /** extra response headers (e.g. Retry-After, WWW-Authenticate) */
  readonly headers: Record<string, string>
  /** extra top-level fields of `error` (e.g. `fields` for validation errors) */
  readonly details: Record<string, unknown>

  constructor(
    status: ContentfulStatusCode,
    code: string,
    message: string,
    options?: {
      headers?: Record<string, string>
      details?: Record<string, unknown>
      cause?: unknown
    },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.status = status
    this.code = code
    this.headers = options?.headers ?? {}
    this.details = options?.details ?? {}
  }
}

/** 400: the request cannot be parsed (malformed JSON, bad header syntax). */
export class BadRequestError extends ApiError {
  override readonly name = 'BadRequestError'
  constructor(code: string, message: string) {
    super(400, code, message)
  }
}

/** 401: no or unknown credentials. */
export class UnauthorizedError extends ApiError {
  override readonly name = 'UnauthorizedError'
  constructor(message = 'A valid API key is required: Authorization: Bearer <key>') {
    super(401, 'unauthorized', message, {
      headers: { 'WWW-Authenticate': 'Bearer realm="piflow"' },
    })
  }
}

/** 403: the key is valid but lacks the scope. */
export class ForbiddenError extends ApiError {
  override readonly name = 'ForbiddenError'
  constructor(message: string) {
    super(403, 'forbidden', message)
  }
}

/** 404: unknown route, generation, model or image. */
export class NotFoundError extends ApiError {
  override readonly name = 'NotFoundError'
  constructor(message: string, code = 'not_found') {
    super(404, code, message)
  }
}

/** 409: an Idempotency-Key whose first request is still running; retry in `retryAfter` seconds. */
export class ConflictError extends ApiError {
  override readonly name = 'ConflictError'
  constructor(code: string, message: string, retryAfter = 1) {
    super(409, code, message, { headers: { 'Retry-After': String(retryAfter) } })
  }
}

/** 413: body larger than the route accepts. */
export class PayloadTooLargeError extends ApiError {
  override readonly name = 'PayloadTooLargeError'
  constructor(limit: number) {
    super(413, 'payload_too_large', `Request body exceeds ${limit} bytes`)
  }
}

/** 415: body is not application/json. */
export class UnsupportedMediaTypeError extends ApiError {
  override readonly name = 'UnsupportedMediaTypeError'
  constructor(got: string | undefined) {
    super(
      415,
      'unsupported_media_type',
      `Expected Content-Type: application/json (UTF-8), got ${got ? JSON.stringify(got) : 'none'}`,
    )
  }
}

/** 422: well-formed JSON with values the model or the API does not accept. */
export class ValidationError extends ApiError {
  override readonly name = 'ValidationError'
  readonly fields: FieldError[]
  constructor(fields: FieldError[], code = 'validation_failed') {
    const summary = fields.map((f) => `${f.path || '(body)'}: ${f.message}`).join('; ')
    super(422, code, `Invalid request: ${summary}`, { details: { fields } })
    this.fields = fields
  }
}

/** 429: the key's quota window is exhausted. */
export class RateLimitedError extends ApiError {
  override readonly name = 'RateLimitedError'
  constructor(retryAfterSeconds: number, headers: Record<string, string>) {
    super(429, 'rate_limited', `Rate limit exceeded; retry in ${retryAfterSeconds} s`, {
      headers: { ...headers, 'Retry-After': String(retryAfterSeconds) },
    })
  }
}

/** 502/503/504: no backend could serve the request. */
export class BackendError extends ApiError {
  override readonly name = 'BackendError'
  constructor(
    status: 502 | 503 | 504,
    code: string,
    message: string,
    options?: { retryAfter?: number; cause?: unknown },
  ) {
    super(status, code, message, {
      ...(options?.retryAfter === undefined
        ? {}
        : { headers: { 'Retry-After': String(options.retryAfter) } }),
      cause: options?.cause,
    })
  }
}

/** 500: the worker is misconfigured (missing binding/secret); never caused by the caller. */
export class ConfigError extends ApiError {
  override readonly name = 'ConfigError'
  constructor(message: string) {
    super(500, 'server_misconfigured', message)
  }
}

/** The JSON body every error response carries. */
export interface ErrorBody {
  error: { code: string; message: string; [extra: string]: unknown }
  requestId: string
}

/** Renders any ApiError as the public error body. */
export function errorBody(error: ApiError, requestId: string): ErrorBody {
  return { error: { code: error.code, message: error.message, ...error.details }, requestId }
}
