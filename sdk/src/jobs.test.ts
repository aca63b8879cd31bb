/**
 * The SDK's side of jobs (cancel, abort → cancel, queued / canceled events, respond-async submit) and
 * of client tokens (fixed, provided, refreshed), against real node:http servers that script the API's
 * answers as documented in worker/README.md. The same calls run against the real worker in
 * test/browser/sdk-jobs.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { createClient } from './client.ts'
import { ApiError, GenerationCanceledError, PiflowError } from './errors.ts'
import {
  type ScriptHandler,
  type ScriptServer,
  type SeenRequest,
  sendJson,
  serverPerTest,
  testClient,
} from './testing/script-server.ts'
import type { StreamEvent } from './types.ts'

const serve = serverPerTest()

const client = testClient

const record = (status: string, extra: Record<string, unknown> = {}) => ({
  id: 'gen_1',
  status,
  model: 'piflow-emoji',
  seed: 1,
  nfe: 4,
  images: [],
  ...extra,
})

const sse = (event: string, data: unknown, id?: number) =>
  `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const waitFor = async (check: () => boolean) => {
  while (!check()) await new Promise((r) => setTimeout(r, 5))
}

const cancels = (s: ScriptServer) => s.requests.filter((r) => r.url.endsWith('/cancel'))

/**
 * An API whose POST streams `id` (and `queued`) and then hangs, as a generation that is still running;
 * cancel answers with the canceled record.
 */
const hangingGeneration = (before: string[] = []): ScriptHandler => {
  return (req, res) => {
    if (req.url === '/v1/generations/gen_1/cancel') return sendJson(res, 200, record('canceled'))
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(sse('id', { id: 'gen_1', seed: 1, nfe: 4 }, 0))
    for (const text of before) res.write(text)
  }
}

describe('client.cancel', () => {
  it('posts to the cancel route and resolves with the canceled record', async () => {
    const s = await serve((_req, res) => sendJson(res, 200, record('canceled')))
    const result = await client(s).cancel('gen_1')
    expect(result.data.status).toBe('canceled')
    expect(s.requests[0]).toMatchObject({ method: 'POST', url: '/v1/generations/gen_1/cancel' })
    expect(s.requests[0]?.headers.authorization).toBe('Bearer pk_test')
  })

  it('rejects a finished generation with 409 generation_finished, without retrying it', async () => {
    const s = await serve((_req, res) =>
      sendJson(res, 409, {
        error: {
          code: 'generation_finished',
          message: 'Generation gen_1 already succeeded',
          status: 'succeeded',
        },
        requestId: 'r1',
      }),
    )
    const error = await client(s)
      .cancel('gen_1')
      .catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 409, code: 'generation_finished' })
    expect(error.body.error.status).toBe('succeeded')
    expect(s.requests).toHaveLength(1)
  })
})

describe('abort cancels the generation on the server', () => {
  it('an aborted stream cancels once its id is known, and rejects with the abort reason as is', async () => {
    const s = await serve(hangingGeneration())
    const controller = new AbortController()
    const events: StreamEvent[] = []
    const reason = new Error('user navigated away')
    const iterating = (async () => {
      for await (const e of client(s).stream({ prompt: 'a' }, { signal: controller.signal })) {
        events.push(e)
        if (e.type === 'id') controller.abort(reason)
      }
    })()
    const error = await iterating.catch((e) => e)
    expect(error).toBe(reason)
    await waitFor(() => cancels(s).length > 0)
    expect(cancels(s)).toHaveLength(1)
    expect(cancels(s)[0]?.method).toBe('POST')
    expect(events.map((e) => e.type)).toEqual(['id'])
  })

  it('generate() with a signal runs over the stream, so an abort cancels it too', async () => {
    // A signal alone makes generate() stream (so the id is known early)...
    const plain = await serve(hangingGeneration())
    const first = new AbortController()
    const streamed = client(plain).generate({ prompt: 'a' }, { signal: first.signal })
    await waitFor(() => plain.requests.length > 0)
    expect(plain.requests[0]?.headers.accept).toBe('text/event-stream')
    expect(JSON.parse(plain.requests[0]!.body)).toEqual({ preview: false, prompt: 'a' })
    first.abort()
    await expect(streamed).rejects.toBe(first.signal.reason)
    // ...and an abort once the id is known cancels it. Aborting from the progress event that follows
    // the id guarantees the client has it (a fixed sleep can be outlasted on a loaded machine).
    const s = await serve(hangingGeneration([sse('progress', { step: 1, nfe: 4 }, 1)]))
    const controller = new AbortController()
    const pending = client(s).generate(
      { prompt: 'a' },
      { signal: controller.signal, onProgress: () => controller.abort() },
    )
    const error = await pending.catch((e) => e)
    expect(error.name).toBe('AbortError')
    expect(error).toBe(controller.signal.reason)
    await waitFor(() => cancels(s).length > 0)
  })

  it('cancelOnAbort: false leaves it running; an abort before the id is known cancels nothing', async () => {
    const s = await serve(hangingGeneration())
    const controller = new AbortController()
    const stream = client(s).stream(
      { prompt: 'a' },
      { signal: controller.signal, cancelOnAbort: false },
    )
    const iterator = stream[Symbol.asyncIterator]()
    expect((await iterator.next()).value).toMatchObject({ type: 'id', id: 'gen_1' })
    controller.abort()
    await expect(iterator.next()).rejects.toBe(controller.signal.reason)

    const silent = await serve(() => {}) // never answers: no id
    const early = new AbortController()
    const pending = client(silent).generate({ prompt: 'a' }, { signal: early.signal })
    await waitFor(() => silent.requests.length > 0)
    early.abort()
    await expect(pending).rejects.toBe(early.signal.reason)
    await new Promise((r) => setTimeout(r, 50))
    expect(cancels(s)).toEqual([])
    expect(cancels(silent)).toEqual([])
    await silent.close()
  })

  it('a failing cancel never replaces the caller’s abort', async () => {
    const s = await serve((req, res) => {
      if (req.url.endsWith('/cancel')) return void res.socket?.destroy()
      return hangingGeneration()(req, res, 1)
    })
    const controller = new AbortController()
    const stream = client(s, { retry: 0 }).stream({ prompt: 'a' }, { signal: controller.signal })
    const iterator = stream[Symbol.asyncIterator]()
    await iterator.next()
    controller.abort()
    await expect(iterator.next()).rejects.toBe(controller.signal.reason)
    await waitFor(() => cancels(s).length > 0)
  })

  it('resume(id) only follows: its abort cancels only with cancelOnAbort: true', async () => {
    const s = await serve(hangingGeneration())
    for (const cancelOnAbort of [undefined, true]) {
      const controller = new AbortController()
      const iterator = client(s)
        .resume('gen_1', { signal: controller.signal, ...(cancelOnAbort ? { cancelOnAbort } : {}) })
        [Symbol.asyncIterator]()
      await iterator.next()
      controller.abort()
      await iterator.next().catch(() => {})
      await new Promise((r) => setTimeout(r, 30))
    }
    expect(cancels(s)).toHaveLength(1)
  })
})

describe('queued, canceled and cached streams', () => {
  const stream = async (text: string) => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.end(text)
    })
    const events: StreamEvent[] = []
    const st = client(s).stream({ prompt: 'a' }, { onEvent: (e) => events.push(e) })
    return { events, done: st.done() }
  }

  it('yields queued positions, and a canceled generation ends with `canceled`', async () => {
    const { events, done } = await stream(
      sse('id', { id: 'gen_1' }, 0) +
        sse('queued', { id: 'gen_1', status: 'queued', queuePosition: 2 }, 1) +
        sse('queued', { id: 'gen_1', status: 'queued', queuePosition: 0 }, 2) +
        sse('canceled', { id: 'gen_1', status: 'canceled' }, 3),
    )
    const error = await done.catch((e) => e)
    expect(error).toBeInstanceOf(GenerationCanceledError)
    expect(error).toBeInstanceOf(PiflowError)
    expect(error.id).toBe('gen_1')
    expect(events.map((e) => e.type)).toEqual(['id', 'queued', 'queued', 'canceled'])
    expect(events[1]).toMatchObject({ type: 'queued', queuePosition: 2 })
  })

  it('takes a cached result that still sends progress (and skips event types it does not know)', async () => {
    const progress = [1, 2, 3, 4].map((step, i) =>
      sse('progress', { step, nfe: 4, sigma: 1 - step / 4 }, i + 1),
    )
    const { events, done } = await stream(
      sse('id', { id: 'gen_1' }, 0) +
        sse('cached', { id: 'gen_1' }) +
        progress.join('') +
        sse('done', record('succeeded', { cached: true }), 5),
    )
    const result = await done
    expect(result.data.cached).toBe(true)
    expect(events.map((e) => e.type)).toEqual([
      'id',
      'progress',
      'progress',
      'progress',
      'progress',
      'done',
    ])
    expect(events[1]).toEqual({ type: 'progress', step: 1, nfe: 4, sigma: 0.75 })
  })

  it('generate({ onProgress }) reports each step and resolves with the result', async () => {
    const steps: number[] = []
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.end(
        sse('id', { id: 'gen_1' }, 0) +
          sse('progress', { step: 1, nfe: 2 }, 1) +
          sse('progress', { step: 2, nfe: 2 }, 2) +
          sse('done', record('succeeded', { nfe: 2 }), 3),
      )
    })
    const result = await client(s).generate(
      { prompt: 'a', nfe: 2 },
      { onProgress: (p) => steps.push(p.step) },
    )
    expect(steps).toEqual([1, 2])
    expect(result.data).toMatchObject({ id: 'gen_1', status: 'succeeded' })
    expect(s.requests[0]?.headers.accept).toBe('text/event-stream')
  })
})

describe('a generation cancelled meanwhile', () => {
  it('rejects generate() with GenerationCanceledError over JSON too', async () => {
    const s = await serve((_req, res) => sendJson(res, 200, record('canceled')))
    const error = await client(s)
      .generate({ prompt: 'a' })
      .catch((e) => e)
    expect(error).toBeInstanceOf(GenerationCanceledError)
    expect(error.id).toBe('gen_1')
  })
})

describe('client.submit (Prefer: respond-async)', () => {
  it('answers at once with the id and the URLs to follow it', async () => {
    const s = await serve((_req, res) =>
      sendJson(
        res,
        202,
        {
          id: 'gen_1',
          status: 'queued',
          urls: {
            get: `http://api/v1/generations/gen_1`,
            stream: `http://api/v1/generations/gen_1`,
            cancel: `http://api/v1/generations/gen_1/cancel`,
          },
        },
        { location: '/v1/generations/gen_1', 'preference-applied': 'respond-async' },
      ),
    )
    const { data } = await client(s).submit({ prompt: 'a', webhook: 'https://hooks.example/x' })
    expect(s.requests[0]?.headers.prefer).toBe('respond-async')
    expect(s.requests[0]?.headers['idempotency-key']).toBeTruthy()
    expect(JSON.parse(s.requests[0]!.body).webhook).toBe('https://hooks.example/x')
    expect(data).toEqual({
      id: 'gen_1',
      status: 'queued',
      urls: expect.objectContaining({ cancel: 'http://api/v1/generations/gen_1/cancel' }),
    })
  })
})

describe('client tokens', () => {
  const authOf = (r: SeenRequest | undefined) => r?.headers.authorization
  const ok: ScriptHandler = (_req, res) => sendJson(res, 200, { data: [] })

  it('sends a fixed token like a key', async () => {
    const s = await serve(ok)
    await createClient({ baseUrl: s.url, token: 'ct_1' }).models()
    expect(authOf(s.requests[0])).toBe('Bearer ct_1')
  })

  it('asks the provider lazily, once for concurrent calls, and again shortly before expiry', async () => {
    const s = await serve(ok)
    let calls = 0
    const c = createClient({
      baseUrl: s.url,
      tokenProvider: async () => {
        calls++
        await new Promise((r) => setTimeout(r, 20))
        return { token: `ct_${calls}`, expiresAt: new Date(Date.now() + 3_600_000).toISOString() }
      },
    })
    expect(calls).toBe(0)
    await Promise.all([c.models(), c.models(), c.models()])
    expect(calls).toBe(1)
    expect(s.requests.map(authOf)).toEqual(['Bearer ct_1', 'Bearer ct_1', 'Bearer ct_1'])

    // A token that expires in 40 ms is renewed after half its life (before it expires).
    const short = await serve(ok)
    let n = 0
    const d = createClient({
      baseUrl: short.url,
      tokenProvider: async () => ({ token: `st_${++n}`, expiresAt: Date.now() + 40 }),
    })
    await d.models()
    await new Promise((r) => setTimeout(r, 25))
    await d.models()
    expect(short.requests.map(authOf)).toEqual(['Bearer st_1', 'Bearer st_2'])
    await short.close()
  })

  it('on 401 token_expired, refreshes once and repeats the call with the same idempotency key', async () => {
    const expired = (res: Parameters<ScriptHandler>[1]) =>
      sendJson(res, 401, { error: { code: 'token_expired', message: 'expired' }, requestId: 'r' })
    const s = await serve((req, res) =>
      req.headers.authorization === 'Bearer ct_1'
        ? expired(res)
        : sendJson(res, 200, record('succeeded')),
    )
    let calls = 0
    const c = createClient({
      baseUrl: s.url,
      tokenProvider: async () => ({ token: `ct_${++calls}`, expiresAt: Date.now() + 3_600_000 }),
    })
    const result = await c.generate({ prompt: 'a' })
    expect(result.data.status).toBe('succeeded')
    expect(calls).toBe(2)
    const [first, second] = s.requests
    expect(second?.headers['idempotency-key']).toBe(first?.headers['idempotency-key'])

    // A provider that keeps handing out expired tokens: one refresh, then the 401 surfaces.
    const always = await serve((_req, res) => expired(res))
    let given = 0
    const d = createClient({
      baseUrl: always.url,
      tokenProvider: async () => ({ token: `x_${++given}`, expiresAt: Date.now() + 3_600_000 }),
    })
    await expect(d.models()).rejects.toMatchObject({ status: 401, code: 'token_expired' })
    expect(given).toBe(2)
    expect(always.requests).toHaveLength(2)
    await always.close()
  })

  it('wraps a failing or malformed provider in a PiflowError', async () => {
    const s = await serve(ok)
    const failing = createClient({
      baseUrl: s.url,
      retry: 0,
      tokenProvider: async () => {
        throw new TypeError('proxy down')
      },
    })
    const error = await failing.models().catch((e) => e)
    expect(error).toBeInstanceOf(PiflowError)
    expect(error.message).toMatch(/tokenProvider failed: proxy down/)
    const malformed = createClient({
      baseUrl: s.url,
      retry: 0,
      tokenProvider: async () => ({ token: 'x' }) as never,
    })
    await expect(malformed.models()).rejects.toThrow(/\{ token, expiresAt \}/)
    expect(s.requests).toHaveLength(0)
  })
})
