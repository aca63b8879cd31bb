/**
 * @module http
 * The one place that knows about ky: builds the HTTP instance (auth, timeout, retries) and maps ky's
 * errors onto the SDK's error classes (`toPiflowError`, which every call site applies), so ky never
 * reaches a caller. ky 1.x rather than 2.x: 1.14 has every option used here in ~5 KB min+gzip, ky 2
 * needs ~9 KB, more than the root entry's whole 8 KB budget.
 */
import ky, { type HTTPError, type KyInstance } from 'ky'
import {
  ApiError,
  type FieldError,
  NetworkError,
  PiflowError,
  TimeoutError,
  ValidationError,
} from './errors.ts'
import type { RetryOptions } from './types.ts'

/**
 * Statuses worth retrying: rate limited, the edge/backend briefly unavailable, and 409 = an earlier
 * attempt with this Idempotency-Key is still running (the retry then replays its result).
 */
const RETRY_STATUSES = [409, 429, 502, 503, 504]

/** Options the HTTP layer needs, already normalised by the client. */
export interface HttpOptions {
  baseUrl: string
  apiKey: string | undefined
  fetch: typeof fetch | undefined
  retry: Required<RetryOptions>
  timeout: number | false
  headers: Record<string, string>
}

/** Backoff before retry `attempt` (1-based), before jitter and the `maxDelay` cap: doubling. */
export const backoffDelay = (retry: Required<RetryOptions>, attempt: number) =>
  retry.delay * 2 ** (attempt - 1)

/** ±25 % (fal's retry.ts): enough to spread a thundering herd without stretching the wait. */
export const jitter = (delay: number) => delay * (0.75 + Math.random() * 0.5)

/** Creates the ky instance every call of one client goes through. */
export const createHttp = (options: HttpOptions): KyInstance =>
  ky.create({
    prefixUrl: options.baseUrl,
    timeout: options.timeout,
    headers: {
      ...options.headers,
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
    },
    // Resolved per call (not captured), and called unbound: some runtimes throw "Illegal invocation"
    // when fetch is invoked as a method of another object (replicate-javascript#134).
    fetch: (input, init) => (options.fetch ?? globalThis.fetch)(input, init),
    retry: {
      limit: options.retry.limit,
      // POST is safe to retry because every logical call carries one Idempotency-Key.
      methods: ['get', 'post'],
      statusCodes: RETRY_STATUSES,
      afterStatusCodes: RETRY_STATUSES,
      maxRetryAfter: options.retry.maxRetryAfter,
      backoffLimit: options.retry.maxDelay,
      delay: (attempt) => backoffDelay(options.retry, attempt),
      jitter,
    },
    // The error body is read here, while ky still hands out the response; toPiflowError maps it.
    hooks: { beforeError: [withBody] },
  })

/** An HTTPError carrying its parsed JSON body (undefined when the body is not JSON). */
type HTTPErrorWithBody = HTTPError & { body?: unknown }

const withBody = async (error: HTTPErrorWithBody): Promise<HTTPError> => {
  error.body = await error.response
    .clone()
    .json()
    .catch(() => undefined)
  return error
}

/**
 * Maps any error from ky (or from reading a body) onto the SDK's classes. A caller's own abort reason
 * is returned untouched so `signal.reason` surfaces as-is.
 */
export const toPiflowError = (error: unknown): Error => {
  if (!(error instanceof Error)) return new PiflowError(String(error))
  if (error instanceof PiflowError || error.name === 'AbortError') return error
  if (error.name === 'HTTPError') {
    const { response, body } = error as HTTPErrorWithBody
    return apiErrorFrom(response.status, response.headers, body, error)
  }
  if (error.name === 'TimeoutError') return new TimeoutError(error.message, { cause: error })
  // fetch rejects with a TypeError when the request never got a response (DNS, refused, reset, CORS)
  if (error.name === 'TypeError' || error.name === 'NetworkError') {
    return new NetworkError(error.message, { cause: error })
  }
  return new PiflowError(error.message, { cause: error })
}

/** Builds the typed error for an error response `{ error: { code, message, fields? }, requestId }`. */
export const apiErrorFrom = (
  status: number,
  headers: Headers | undefined,
  body: unknown,
  cause?: unknown,
): ApiError => {
  const payload = (body ?? {}) as {
    error?: { code?: string; message?: string; fields?: unknown; issues?: unknown }
    requestId?: string
  }
  const args = {
    status,
    code: payload.error?.code ?? `http_${status}`,
    message: payload.error?.message ?? `HTTP ${status}`,
    requestId: payload.requestId ?? headers?.get('x-request-id') ?? undefined,
    body,
    cause,
  }
  const fields = payload.error?.fields ?? payload.error?.issues
  return status === 422 || Array.isArray(fields)
    ? new ValidationError({ ...args, fieldErrors: toFieldErrors(fields) })
    : new ApiError(args)
}

const toFieldErrors = (fields: unknown): FieldError[] =>
  Array.isArray(fields)
    ? fields.map((f: { path?: unknown; message?: string; code?: string }) => {
        const e: FieldError = {
          path: Array.isArray(f.path) ? f.path.join('.') : String(f.path ?? ''),
          message: String(f.message ?? ''),
        }
        if (f.code) e.code = f.code
        return e
      })
    : []
