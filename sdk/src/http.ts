/**
 * @module http
 * The one place that knows about ky: builds the HTTP layer (auth, timeout, retries) and maps ky's
 * errors onto the SDK's error classes (`toPiflowError`), so ky never reaches a caller. ky 1.x rather than 2.x: 1.14 has every option used here in ~5 KB min+gzip, ky 2
 * needs ~9 KB, more than the root entry's whole 8 KB budget.
 */
import ky, { type HTTPError } from 'ky'
import type { Auth } from './auth.ts'
import {
  ApiError,
  type FieldError,
  IdempotencyKeyReusedError,
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
  /** Ends in `/`, without `/v1`. */
  baseUrl: string
  auth: Auth
  fetch: typeof fetch | undefined
  retry: Required<RetryOptions>
  timeout: number | false
  headers: Record<string, string>
}

/** One call's request: a path under the base URL (`v1/…`) and what to send. */
export interface Call {
  method?: 'get' | 'post'
  json?: unknown
  headers?: Record<string, string>
  signal?: AbortSignal | undefined
  /** A 409 is an answer, not "still running": not retried (e.g. cancel's `generation_finished`). */
  conflictIsFinal?: boolean
}

/** Sends one logical call (its retries included); every failure is one of the SDK's errors. */
export type Http = ((path: string, call?: Call) => Promise<Response>) & { baseUrl: string }

/** Backoff before retry `attempt` (1-based), before jitter and the `maxDelay` cap: doubling. */
export const backoffDelay = (retry: Required<RetryOptions>, attempt: number) =>
  retry.delay * 2 ** (attempt - 1)

/** ±25 % (fal's retry.ts): enough to spread a thundering herd without stretching the wait. */
export const jitter = (delay: number) => delay * (0.75 + Math.random() * 0.5)

/** Creates the HTTP layer every call of one client goes through. */
export const createHttp = (options: HttpOptions): Http => {
  const instance = ky.create({
    prefixUrl: options.baseUrl,
    timeout: options.timeout,
    headers: options.headers,
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
  const send = async (path: string, call: Call, renewed: boolean): Promise<Response> => {
    let attempts = 0
    let sent: string | undefined
    try {
      return await instance(path, {
        method: call.method ?? 'get',
        json: call.json,
        headers: call.headers ?? {},
        signal: call.signal ?? null,
        ...(call.conflictIsFinal
          ? {
              retry: {
                shouldRetry: ({ error }) =>
                  (error as HTTPError).response?.status === 409 ? false : undefined,
              },
            }
          : {}),
        hooks: {
          // Every attempt asks for the credential: a token provider may have refreshed it meanwhile.
          beforeRequest: [
            async (request) => {
              attempts++
              sent = await options.auth.current()
              if (sent) request.headers.set('authorization', `Bearer ${sent}`)
            },
          ],
        },
      })
    } catch (error) {
      // The caller's abort surfaces as the caller's own reason, whatever fetch wrapped it in.
      if (call.signal?.aborted) throw call.signal.reason
      const mapped = toPiflowError(error, {
        url: `${(call.method ?? 'get').toUpperCase()} ${options.baseUrl}${path}`,
        attempts,
      })
      // A provided token that expired in flight: once more, with a fresh one.
      const expired = mapped instanceof ApiError && mapped.code === 'token_expired'
      if (!expired || renewed || !options.auth.expired(sent)) throw mapped
      return send(path, call, true)
    }
  }
  return Object.assign((path: string, call: Call = {}) => send(path, call, false), {
    baseUrl: options.baseUrl,
  })
}

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
 * Maps any error from ky (or from reading a body) onto the SDK's classes; `where` (the request and
 * how many attempts it got) goes into network errors. An `AbortError` (the caller's abort, the
 * platform's DOMException or the caller's own `signal.reason`) is returned untouched.
 */
export const toPiflowError = (error: unknown, where?: { url: string; attempts: number }): Error => {
  if (!(error instanceof Error)) return new PiflowError(String(error))
  if (error instanceof PiflowError || error.name === 'AbortError') return error
  if (error.name === 'HTTPError') {
    const { response, body } = error as HTTPErrorWithBody
    return apiErrorFrom(response.status, response.headers, body, error)
  }
  const at = where
    ? ` (${where.url}, ${where.attempts} attempt${where.attempts === 1 ? '' : 's'})`
    : ''
  if (error.name === 'TimeoutError') return new TimeoutError(error.message + at, { cause: error })
  // fetch rejects with a TypeError when the request never got a response (DNS, refused, reset, CORS)
  if (error.name === 'TypeError' || error.name === 'NetworkError') {
    return new NetworkError(error.message + at, { cause: error, ...where })
  }
  return new PiflowError(error.message, { cause: error })
}

/** `Retry-After` in seconds (delta-seconds or an HTTP date), or undefined. */
const retryAfterOf = (headers: Headers | undefined) => {
  const value = headers?.get('retry-after')
  if (!value) return undefined
  const seconds = Number(value)
  return Number.isNaN(seconds) ? Math.max(0, (Date.parse(value) - Date.now()) / 1000) : seconds
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
    retryAfter: retryAfterOf(headers),
    cause,
  }
  const fields = payload.error?.fields ?? payload.error?.issues
  if (args.code === 'idempotency_key_reused') return new IdempotencyKeyReusedError(args)
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
