/**
 * @module backends
 * Routes student forwards to the configured backends: weighted choice among healthy ones, a per-attempt
 * timeout, retry on another backend (forwards are pure functions of their inputs, so retrying is
 * safe), and a circuit breaker per backend (open after consecutive failures, half-open after a
 * cool-down, when a `/readyz` probe must pass before traffic returns). Breaker state is per isolate:
 * cheap, and each isolate learns about a dead backend within a few requests.
 */

import { CANCEL_ID_HEADER } from '@piflow/protocol'
import type { BackendConfig } from './env.ts'
import { BackendError } from './errors.ts'

/** Consecutive failures that open a backend's circuit. */
export const FAILURES_TO_OPEN = 3
/** How long an open circuit stays open before a probe may close it. */
export const OPEN_MS = 10_000
const PROBE_TIMEOUT_MS = 2_000

type CircuitState = 'closed' | 'open' | 'half-open'

interface BackendHealth {
  failures: number
  openedAt: number
  /** a running /readyz probe (half-open), shared by concurrent callers */
  probe: Promise<boolean> | undefined
}

const health = new Map<string, BackendHealth>()

function healthOf(backend: BackendConfig): BackendHealth {
  const key = `${backend.id}|${backend.url}`
  let h = health.get(key)
  if (!h) {
    h = { failures: 0, openedAt: 0, probe: undefined }
    health.set(key, h)
  }
  return h
}

function circuitOf(h: BackendHealth, now: number): CircuitState {
  if (h.failures < FAILURES_TO_OPEN) return 'closed'
  return now - h.openedAt >= OPEN_MS ? 'half-open' : 'open'
}

function recordSuccess(h: BackendHealth): void {
  h.failures = 0
}

function recordFailure(h: BackendHealth): void {
  h.failures++
  if (h.failures >= FAILURES_TO_OPEN) h.openedAt = Date.now()
}

/** The answer of one backend call; `value` is what `decode` made of the bytes. */
export interface BackendResponse<T = Uint8Array> {
  bytes: Uint8Array
  value: T
  backendId: string
  ms: number
  attempts: number
}

/** Options of {@link BackendRouter.post}. */
export interface PostOptions<T = Uint8Array> {
  signal?: AbortSignal
  contentType?: string
  /**
   * Parses and checks a 2xx body. Throwing marks that backend's answer as unusable (corrupt, wrong
   * shapes, non-finite): like a transport failure it counts against the backend and the request is
   * retried on another one, so one bad backend never fails a generation a healthy one can serve.
   */
  decode?: (bytes: Uint8Array) => T
}

/** A non-2xx answer that another backend would answer the same way (e.g. a 4xx on bad tensors). */
class PermanentBackendFailure extends Error {}

/** What one attempt needs of the caller's options. */
interface SendOptions {
  signal?: AbortSignal | undefined
  contentType?: string | undefined
  headers?: Record<string, string> | undefined
}

/** A 2xx answer whose body `decode` refused. */
class UnusableOutput extends Error {}

/**
 * 429 / 503 from a backend: it is alive but shedding load (queue full, draining). Not a fault, so it
 * does not trip the breaker; when every backend sheds, so does the worker (503 + Retry-After).
 */
class OverloadedBackend extends Error {
  constructor(
    message: string,
    readonly retryAfter: number,
  ) {
    super(message)
  }
}

export class BackendRouter {
  readonly #backends: BackendConfig[]
  readonly #secret: string
  readonly #timeoutMs: number
  /** sent as X-Piflow-Request-Id on every call (the generation id), so {@link cancel} can name it */
  readonly #requestId: string | undefined
  /** backends this router has sent requests to: where a cancel must go */
  readonly #contacted = new Set<BackendConfig>()

  constructor(
    backends: BackendConfig[],
    secret: string,
    timeoutMs: number,
    options?: { requestId?: string },
  ) {
    this.#backends = backends
    this.#secret = secret
    this.#timeoutMs = timeoutMs
    this.#requestId = options?.requestId
  }

  /**
   * Tells every backend this router used to stop what it still runs under the router's request id
   * (`POST /v1/requests/:id/cancel`, backend/PROTOCOL.md). Best effort: the aborted fetch has closed
   * its connection too, which stops the backend alike; a 404 (nothing left in flight) is expected.
   */
  async cancel(): Promise<void> {
    const id = this.#requestId
    if (id === undefined) return
    await this.#postToEach([...this.#contacted], `/v1/requests/${encodeURIComponent(id)}/cancel`)
  }

  /** The per-attempt timeout; for a stream ({@link open}), the longest silence it tolerates. */
  get timeoutMs(): number {
    return this.#timeoutMs
  }

  /**
   * POSTs an empty JSON object to `path` on every backend at once (a cancel: whichever runs the
   * generation takes it). Resolves true when one answered 2xx; failures are answers too (false).
   */
  async broadcast(path: string): Promise<boolean> {
    return (await this.#postToEach(this.#backends, path)).includes(true)
  }

  /** `{}` POSTed to `path` on each of `backends` at once, within the probe timeout: who answered 2xx. */
  #postToEach(backends: BackendConfig[], path: string): Promise<boolean[]> {
    return Promise.all(
      backends.map(async (backend) => {
        try {
          const response = await fetch(`${backend.url}${path}`, {
            method: 'POST',
            headers: {
              'Content-Type': 'application/json',
              'X-Piflow-Backend-Secret': this.#secret,
            },
            body: '{}',
            signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
          })
          await response.body?.cancel()
          return response.ok
        } catch (error) {
          console.error(`POST ${path} on ${backend.id} failed`, error)
          return false
        }
      }),
    )
  }

  /** Health of each backend (probes every backend's /readyz now). */
  async check(
    signal?: AbortSignal,
  ): Promise<{ id: string; healthy: boolean; circuit: CircuitState }[]> {
    const now = Date.now()
    return Promise.all(
      this.#backends.map(async (b) => {
        const healthy = await this.#probe(b, signal)
        return { id: b.id, healthy, circuit: circuitOf(healthOf(b), now) }
      }),
    )
  }

  /**
   * POSTs `body` to `path` on a backend, retrying on the others when one fails in a way another could
   * fix (transport error, timeout, 5xx, 429). Throws {@link BackendError} when none succeeded.
   */
  async post<T = Uint8Array>(
    path: string,
    body: Uint8Array,
    options?: PostOptions<T>,
  ): Promise<BackendResponse<T>> {
    const answer = await this.#withRetries(path, body, options, async (backend, response) => {
      const bytes = new Uint8Array(await response.arrayBuffer())
      try {
        return { bytes, value: options?.decode ? options.decode(bytes) : (bytes as T) }
      } catch (error) {
        throw new UnusableOutput(
          `${backend.id} answered unusable output: ${(error as Error).message}`,
          { cause: error },
        )
      }
    })
    return {
      ...answer.value,
      backendId: answer.backendId,
      ms: answer.ms,
      attempts: answer.attempts,
    }
  }

  /**
   * POSTs `body` and hands back the 2xx response with its body unread (a stream: the NDJSON of a whole
   * generation, remote-generation.ts). Retried like {@link post} until a backend answers; the
   * per-attempt timeout covers the response headers only, and `options.signal` aborts the stream.
   */
  async open(
    path: string,
    body: Uint8Array | string,
    options?: Omit<PostOptions<never>, 'decode'> & { headers?: Record<string, string> },
  ): Promise<{ response: Response; backendId: string; attempts: number }> {
    const answer = await this.#withRetries(
      path,
      body,
      options,
      async (_backend, response) => response,
    )
    return { response: answer.value, backendId: answer.backendId, attempts: answer.attempts }
  }

  /** The retry loop of post/open: `consume` reads a 2xx answer (a throw there counts as a failure). */
  async #withRetries<T>(
    path: string,
    body: Uint8Array | string,
    options: SendOptions | undefined,
    consume: (backend: BackendConfig, response: Response) => Promise<T>,
  ): Promise<{ value: T; backendId: string; ms: number; attempts: number }> {
    if (this.#backends.length === 0) {
      throw new BackendError(503, 'no_backends', 'No inference backends are configured')
    }
    const tried = new Set<BackendConfig>()
    let lastError: unknown
    let overloaded = 0
    let retryAfter = 1
    for (let attempt = 1; attempt <= Math.min(3, this.#backends.length); attempt++) {
      options?.signal?.throwIfAborted()
      const backend = await this.#choose(tried, options?.signal)
      if (!backend) break
      tried.add(backend)
      const h = healthOf(backend)
      const started = performance.now()
      try {
        const value = await this.#send(backend, path, body, options, (response) =>
          consume(backend, response),
        )
        recordSuccess(h)
        return { value, backendId: backend.id, ms: performance.now() - started, attempts: attempt }
      } catch (error) {
        if (options?.signal?.aborted) throw error
        if (error instanceof PermanentBackendFailure) {
          throw new BackendError(502, 'backend_rejected', error.message, { cause: error })
        }
        lastError = error
        if (error instanceof OverloadedBackend) {
          overloaded++
          retryAfter = Math.max(retryAfter, error.retryAfter)
        } else {
          recordFailure(h)
        }
      }
    }
    if (overloaded > 0 && overloaded === tried.size) {
      throw new BackendError(
        503,
        'backends_overloaded',
        `Every inference backend tried (${tried.size}) is at capacity; retry later`,
        { retryAfter, cause: lastError },
      )
    }
    if (lastError instanceof UnusableOutput) {
      throw new BackendError(
        502,
        'backend_bad_output',
        `Inference backend output unusable after ${tried.size} attempt(s): ${lastError.message}`,
        { cause: lastError },
      )
    }
    const timedOut = lastError instanceof DOMException && lastError.name === 'TimeoutError'
    if (lastError === undefined) {
      throw new BackendError(
        503,
        'backends_unavailable',
        'All inference backends are unavailable',
        {
          retryAfter: Math.ceil(OPEN_MS / 1000),
        },
      )
    }
    throw new BackendError(
      timedOut ? 504 : 502,
      timedOut ? 'backend_timeout' : 'backend_failed',
      `Inference backend failed after ${tried.size} attempt(s): ${(lastError as Error).message}`,
      { cause: lastError },
    )
  }

  /**
   * One attempt: the request, its status mapped onto the retry classes, then `consume` on a 2xx
   * answer, all within the per-attempt timeout (which ends once `consume` returns).
   */
  async #send<T>(
    backend: BackendConfig,
    path: string,
    body: Uint8Array | string,
    options: SendOptions | undefined,
    consume: (response: Response) => Promise<T>,
  ): Promise<T> {
    const deadline = new AbortController()
    const timer = setTimeout(
      () =>
        deadline.abort(new DOMException(`${backend.id} did not answer in time`, 'TimeoutError')),
      this.#timeoutMs,
    )
    const signal = options?.signal
      ? AbortSignal.any([options.signal, deadline.signal])
      : deadline.signal
    this.#contacted.add(backend)
    try {
      // Only our own secret goes to backends: callers' Authorization is never forwarded.
      const response = await fetch(`${backend.url}${path}`, {
        method: 'POST',
        headers: {
          'Content-Type': options?.contentType ?? 'application/octet-stream',
          ...options?.headers,
          ...(this.#requestId === undefined ? {} : { [CANCEL_ID_HEADER]: this.#requestId }),
          'X-Piflow-Backend-Secret': this.#secret,
        },
        body,
        signal,
      })
      if (response.ok) return await consume(response)
      const bytes = new Uint8Array(await response.arrayBuffer())
      const detail = new TextDecoder().decode(bytes.subarray(0, 500))
      const message = `${backend.id} answered ${response.status}: ${detail}`
      if (response.status === 503 || response.status === 429) {
        const seconds = Number(response.headers.get('Retry-After'))
        throw new OverloadedBackend(message, seconds > 0 && seconds <= 60 ? Math.ceil(seconds) : 1)
      }
      if (response.status >= 500 || response.status === 408) {
        throw new Error(message)
      }
      throw new PermanentBackendFailure(message)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Weighted random choice among untried backends whose circuit admits traffic. */
  async #choose(
    tried: Set<BackendConfig>,
    signal?: AbortSignal,
  ): Promise<BackendConfig | undefined> {
    const now = Date.now()
    const candidates = this.#backends.filter((b) => !tried.has(b))
    const closed = candidates.filter((b) => circuitOf(healthOf(b), now) === 'closed')
    if (closed.length > 0) return weightedPick(closed)
    // No closed circuit: give half-open ones a chance, each gated by a /readyz probe.
    for (const b of candidates.filter((b) => circuitOf(healthOf(b), now) === 'half-open')) {
      const h = healthOf(b)
      h.probe ??= this.#probe(b, signal).finally(() => {
        h.probe = undefined
      })
      if (await h.probe) {
        recordSuccess(h)
        return b
      }
      h.openedAt = Date.now()
    }
    return undefined
  }

  async #probe(backend: BackendConfig, signal?: AbortSignal): Promise<boolean> {
    const timeout = AbortSignal.timeout(PROBE_TIMEOUT_MS)
    try {
      const response = await fetch(`${backend.url}/readyz`, {
        headers: { 'X-Piflow-Backend-Secret': this.#secret },
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      })
      await response.body?.cancel()
      return response.ok
    } catch {
      return false
    }
  }
}

function weightedPick(backends: BackendConfig[]): BackendConfig {
  const total = backends.reduce((sum, b) => sum + b.weight, 0)
  let r = Math.random() * total
  for (const b of backends) {
    r -= b.weight
    if (r < 0) return b
  }
  return backends[backends.length - 1]!
}

/** Test hook: forget all breaker state (isolates keep it between requests). */
export function resetBackendHealth(): void {
  health.clear()
}
