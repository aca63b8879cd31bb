import { describe, expect, it } from 'vitest'
import { createClient } from './client.ts'
import {
  ApiError,
  IdempotencyKeyReusedError,
  isApiError,
  isPiflowError,
  NetworkError,
  PiflowError,
  TimeoutError,
  ValidationError,
} from './errors.ts'
import { sendJson, serverPerTest, testClient } from './testing/script-server.ts'

const PNG_1PX =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=='

const generation = (seed = 7) => ({
  id: 'gen_123',
  model: 'piflow-emoji',
  seed,
  nfe: 4,
  width: 1,
  height: 1,
  images: [{ index: 0, seed, width: 1, height: 1, contentType: 'image/png', data: PNG_1PX }],
  timings: { totalMs: 99, forwardMs: 12.5 },
})

const serve = serverPerTest()

const client = testClient

describe('generate', () => {
  it('posts the input with auth and an idempotency key, and decodes the result', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 200, generation(), { 'x-request-id': 'req_abc' }),
    )
    const result = await client(s).generate({ prompt: 'a red apple', nfe: 4, seed: 7 })

    const [req] = s.requests
    expect(req?.method).toBe('POST')
    expect(req?.url).toBe('/v1/generations')
    expect(req?.headers.authorization).toBe('Bearer pk_test')
    expect(req?.headers['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/)
    expect(req?.headers.accept).toBe('application/json')
    expect(JSON.parse(req?.body ?? '')).toEqual({ prompt: 'a red apple', nfe: 4, seed: 7 })

    expect(result.requestId).toBe('req_abc')
    expect(result.backend).toBe('remote')
    expect(result.timings.forwardMs).toBe(12.5)
    expect(result.timings.totalMs).not.toBe(99) // the SDK's own measurement of the call
    expect(result.data.timings.totalMs).toBe(99)
    expect(result.data.seed).toBe(7)
    const image = result.data.images[0]
    expect(image?.contentType).toBe('image/png')
    // PNG signature: the base64 payload was decoded into bytes.
    expect([...(image?.data?.subarray(0, 4) ?? [])]).toEqual([0x89, 0x50, 0x4e, 0x47])
  })

  it('uses a fresh idempotency key per call, and the caller-given one when passed', async () => {
    const s = await serve((_req, res) => sendJson(res, 200, generation()))
    const c = client(s)
    await c.generate({ prompt: 'a' })
    await c.generate({ prompt: 'a' })
    await c.generate({ prompt: 'a' }, { idempotencyKey: 'mine-1' })
    const keys = s.requests.map((r) => r.headers['idempotency-key'])
    expect(new Set(keys).size).toBe(3)
    expect(keys[2]).toBe('mine-1')
  })

  it('retries 409/429/502/503/504 with the same idempotency key, then succeeds', async () => {
    const statuses = [409, 429, 502, 503, 504]
    const s = await serve((_req, res, attempt) => {
      const status = statuses[attempt - 1]
      if (status) sendJson(res, status, { error: { code: 'busy', message: 'busy' } })
      else sendJson(res, 200, generation())
    })
    const result = await client(s, { retry: { limit: 5, delay: 1, maxDelay: 5 } }).generate({
      prompt: 'a',
    })
    expect(result.data.id).toBe('gen_123')
    expect(s.requests).toHaveLength(6)
    expect(new Set(s.requests.map((r) => r.headers['idempotency-key'])).size).toBe(1)
  })

  it('honours Retry-After instead of its own (here: 10 minute) backoff', async () => {
    const s = await serve((_req, res, attempt) => {
      if (attempt === 1) {
        sendJson(res, 503, { error: { code: 'overloaded', message: 'x' } }, { 'retry-after': '0' })
      } else sendJson(res, 200, generation())
    })
    // With a 10-minute backoff the test could only finish in time if Retry-After: 0 was used.
    const c = client(s, { retry: { limit: 1, delay: 600_000, maxDelay: 600_000 } })
    await expect(c.generate({ prompt: 'a' })).resolves.toMatchObject({ data: { id: 'gen_123' } })
    expect(s.requests).toHaveLength(2)
  })

  it('retries network errors (connection reset) with the same key', async () => {
    const s = await serve((req, res, attempt) => {
      if (attempt === 1) res.socket?.destroy()
      else sendJson(res, 200, generation())
      void req
    })
    const result = await client(s).generate({ prompt: 'a' })
    expect(result.data.id).toBe('gen_123')
    expect(s.requests).toHaveLength(2)
    expect(s.requests[0]?.headers['idempotency-key']).toBe(
      s.requests[1]?.headers['idempotency-key'],
    )
  })

  it('gives up after the retry limit with an ApiError carrying status, code and requestId', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 503, { error: { code: 'no_backend', message: 'No backend' }, requestId: 'r1' }),
    )
    const error = await client(s, { retry: { limit: 2, delay: 1 } })
      .generate({ prompt: 'a' })
      .catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 503, code: 'no_backend', requestId: 'r1' })
    expect(error.message).toBe('No backend')
    expect(s.requests).toHaveLength(3)
  })

  it.each([400, 401, 403, 404, 413, 415, 500])('does not retry %i', async (status) => {
    const s = await serve((_req, res) =>
      sendJson(
        res,
        status,
        { error: { code: `c${status}`, message: 'no' } },
        { 'x-request-id': 'rq' },
      ),
    )
    const error = await client(s)
      .generate({ prompt: 'a' })
      .catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).not.toBeInstanceOf(ValidationError)
    expect(error).toMatchObject({ status, code: `c${status}`, requestId: 'rq' })
    expect(s.requests).toHaveLength(1)
  })

  it('turns 422 into a ValidationError with field errors', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 422, {
        error: {
          code: 'invalid_request',
          message: 'nfe must be one of 1, 2, 4',
          fields: [{ path: ['nfe'], message: 'must be one of 1, 2, 4', code: 'invalid_value' }],
        },
        requestId: 'r422',
      }),
    )
    const error = await client(s)
      .generate({ prompt: 'a', nfe: 3 })
      .catch((e) => e)
    expect(error).toBeInstanceOf(ValidationError)
    expect(error).toBeInstanceOf(ApiError)
    expect(error.fieldErrors).toEqual([
      { path: 'nfe', message: 'must be one of 1, 2, 4', code: 'invalid_value' },
    ])
    expect(error.requestId).toBe('r422')
    expect(s.requests).toHaveLength(1)
  })

  it('rejects with the abort reason on a user abort, and never retries it', async () => {
    const s = await serve(() => {}) // never answers
    const controller = new AbortController()
    const pending = client(s).generate({ prompt: 'a' }, { signal: controller.signal })
    while (s.requests.length === 0) await new Promise((r) => setTimeout(r, 5))
    controller.abort()
    const error = await pending.catch((e) => e)
    expect(error.name).toBe('AbortError')
    await new Promise((r) => setTimeout(r, 50))
    expect(s.requests).toHaveLength(1)
  })

  it('stops waiting for a Retry-After when aborted', async () => {
    const s = await serve((_req, res) =>
      sendJson(
        res,
        429,
        { error: { code: 'rate_limited', message: 'slow' } },
        { 'retry-after': '3600' },
      ),
    )
    const controller = new AbortController()
    const pending = client(s).generate({ prompt: 'a' }, { signal: controller.signal })
    while (s.requests.length === 0) await new Promise((r) => setTimeout(r, 5))
    controller.abort(new Error('user gave up'))
    const error = await pending.catch((e) => e)
    expect(error.message).toBe('user gave up')
    expect(s.requests).toHaveLength(1)
  })

  it('throws TimeoutError (a PiflowError) when no response arrives in time', async () => {
    const s = await serve(() => {})
    const error = await client(s, { timeout: 200 })
      .generate({ prompt: 'a' })
      .catch((e) => e)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(isPiflowError(error)).toBe(true)
  })

  it('throws NetworkError when nothing listens, after retrying', async () => {
    const s = await serve(() => {})
    const url = s.url
    await s.close()
    const attempts: number[] = []
    const countingFetch: typeof fetch = (input, init) => {
      attempts.push(1)
      return fetch(input, init)
    }
    const c = createClient({ baseUrl: url, retry: { limit: 2, delay: 1 }, fetch: countingFetch })
    const error = await c.generate({ prompt: 'a' }).catch((e) => e)
    expect(error).toBeInstanceOf(NetworkError)
    expect(error).toBeInstanceOf(PiflowError)
    expect(attempts).toHaveLength(3)
  })

  it('names the URL and the attempts in a NetworkError', async () => {
    const s = await serve(() => {})
    const url = s.url
    await s.close()
    const error = await createClient({ baseUrl: url, retry: { limit: 2, delay: 1 } })
      .get('gen_1')
      .catch((e) => e)
    expect(error).toBeInstanceOf(NetworkError)
    expect(error.url).toBe(`GET ${url}/v1/generations/gen_1`)
    expect(error.attempts).toBe(3)
    expect(error.message).toContain(`(GET ${url}/v1/generations/gen_1, 3 attempts)`)
  })

  it('carries Retry-After as retryAfter (seconds) once its own retries gave up', async () => {
    const s = await serve((_req, res) =>
      sendJson(
        res,
        429,
        { error: { code: 'rate_limited', message: 'slow' } },
        { 'retry-after': '0' },
      ),
    )
    const error = await client(s, { retry: 1 })
      .generate({ prompt: 'a' })
      .catch((e) => e)
    expect(error).toMatchObject({ status: 429, code: 'rate_limited', retryAfter: 0 })
    expect(s.requests).toHaveLength(2)
    const plain = await serve((_req, res) =>
      sendJson(res, 500, { error: { code: 'x', message: 'x' } }),
    )
    expect(
      await client(plain, { retry: 0 })
        .generate({ prompt: 'a' })
        .catch((e) => e.retryAfter),
    ).toBe(undefined)
  })

  it('has its own error class for a reused idempotency key, and surfaces Idempotent-Replayed', async () => {
    const s = await serve((req, res) =>
      req.headers['idempotency-key'] === 'reused'
        ? sendJson(res, 422, {
            error: { code: 'idempotency_key_reused', message: 'different body' },
            requestId: 'r',
          })
        : sendJson(res, 200, generation(), {
            'idempotent-replayed': req.headers['idempotency-key'] === 'old' ? 'true' : 'false',
          }),
    )
    const error = await client(s)
      .generate({ prompt: 'a' }, { idempotencyKey: 'reused' })
      .catch((e) => e)
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).not.toBeInstanceOf(ValidationError)
    expect(isApiError(error)).toBe(true)
    expect(error.code).toBe('idempotency_key_reused')
    expect((await client(s).generate({ prompt: 'a' }, { idempotencyKey: 'old' })).replayed).toBe(
      true,
    )
    expect((await client(s).generate({ prompt: 'a' })).replayed).toBe(false)
  })

  it('accepts a baseUrl that already ends in /v1 (as the start command prints it)', async () => {
    const s = await serve((_req, res) => sendJson(res, 200, generation()))
    for (const base of [`${s.url}/v1`, `${s.url}/v1/`, `${s.url}/`]) {
      await createClient({ baseUrl: base }).generate({ prompt: 'a' })
    }
    expect(s.requests.map((r) => r.url)).toEqual(Array(3).fill('/v1/generations'))
  })

  it('wraps a malformed success body in a PiflowError', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"id": ')
    })
    const error = await client(s)
      .generate({ prompt: 'a' })
      .catch((e) => e)
    expect(error).toBeInstanceOf(PiflowError)
    expect(error.message).toMatch(/malformed JSON/)
  })

  it('never falls back to local generation on auth or validation errors', async () => {
    for (const status of [401, 422]) {
      const s = await serve((req, res) => {
        if (req.url.startsWith('/models/')) return sendJson(res, 404, {})
        sendJson(res, status, { error: { code: 'nope', message: 'nope' } })
      })
      const c = client(s, { fallback: 'local', local: { modelBaseUrl: `${s.url}/models/` } })
      const error = await c.generate({ prompt: 'a' }).catch((e) => e)
      expect(error).toBeInstanceOf(ApiError)
      expect(error.status).toBe(status)
      // Nothing but the one API call: the local path was never even loaded.
      expect(s.requests.map((r) => r.url)).toEqual(['/v1/generations'])
      await s.close()
    }
  })
})

describe('get and models', () => {
  it('reads an earlier generation by id', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 200, { ...generation(), status: 'succeeded', requestId: 'req_first' }),
    )
    const { data, requestId } = await client(s).get('gen_123')
    expect(s.requests[0]?.url).toBe('/v1/generations/gen_123')
    expect(s.requests[0]?.method).toBe('GET')
    expect(data.status).toBe('succeeded')
    expect(requestId).toBe('req_first')
    expect(data.images[0]?.data?.byteLength).toBeGreaterThan(8)
  })

  it('lists models', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 200, {
        object: 'list',
        data: [{ id: 'piflow-emoji', object: 'model', manifest: {}, files: [] }],
      }),
    )
    const { data } = await client(s).models()
    expect(data.map((m) => m.id)).toEqual(['piflow-emoji'])
  })

  it('retries GETs on 502', async () => {
    const s = await serve((_req, res, attempt) =>
      attempt === 1 ? sendJson(res, 502, {}) : sendJson(res, 200, { object: 'list', data: [] }),
    )
    await client(s).models()
    expect(s.requests).toHaveLength(2)
  })
})
