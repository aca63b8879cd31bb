import { afterEach, describe, expect, it } from 'vitest'
import { createClient } from './client.ts'
import { ApiError, NetworkError } from './errors.ts'
import { createSseParser, parseSse, type SseMessage } from './sse.ts'
import { type ScriptServer, startScriptServer } from './testing/script-server.ts'
import type { StreamEvent } from './types.ts'

const STREAM = [
  ': keepalive\r\n',
  'event: id\r\ndata: {"id":"gen_1"}\r\n\r\n',
  'event: progress\ndata: {"step":1,"nfe":2}\n\n',
  ':\n\n', // empty comment + blank line dispatches nothing
  'event: note\rdata: line one\rdata: line two ✓ é\r\r',
  'id: 42\nevent: progress\ndata:{"step":2,"nfe":2}\nretry: 1500\n\n',
  'data: plain\n\n',
].join('')

const EXPECTED: SseMessage[] = [
  { event: 'id', data: '{"id":"gen_1"}', id: undefined },
  { event: 'progress', data: '{"step":1,"nfe":2}', id: undefined },
  { event: 'note', data: 'line one\nline two ✓ é', id: undefined },
  { event: 'progress', data: '{"step":2,"nfe":2}', id: '42', retry: 1500 },
  { event: 'message', data: 'plain', id: '42' },
]

const streamOf = (chunks: Uint8Array[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk)
      controller.close()
    },
  })

const collect = async (body: ReadableStream<Uint8Array>) => {
  const out: SseMessage[] = []
  for await (const message of parseSse(body)) out.push(message)
  return out
}

describe('SSE parser', () => {
  it('parses LF, CRLF and CR line endings, comments, multi-line data, id and retry', () => {
    expect(createSseParser().push(STREAM)).toEqual(EXPECTED)
  })

  it('gives the same messages for every split of the text into two chunks', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      const parser = createSseParser()
      const out = [...parser.push(STREAM.slice(0, cut)), ...parser.push(STREAM.slice(cut))]
      expect(out, `cut at ${cut}`).toEqual(EXPECTED)
    }
  })

  it('gives the same messages when fed one character at a time', () => {
    const parser = createSseParser()
    expect([...STREAM].flatMap((c) => parser.push(c))).toEqual(EXPECTED)
  })

  it('decodes UTF-8 split inside a multi-byte sequence, byte by byte', async () => {
    const bytes = new TextEncoder().encode(`\uFEFF${STREAM}`)
    const chunks = [...bytes].map((b) => Uint8Array.of(b))
    expect(await collect(streamOf(chunks))).toEqual(EXPECTED)
  })

  it('drops a final message that has no terminating blank line', async () => {
    const text = 'data: complete\n\ndata: cut off'
    expect(await collect(streamOf([new TextEncoder().encode(text)]))).toEqual([
      { event: 'message', data: 'complete', id: undefined },
    ])
  })
})

let server: ScriptServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

const PNG_1PX =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=='
const image = { index: 0, seed: 5, width: 1, height: 1, contentType: 'image/png', data: PNG_1PX }
const done = {
  id: 'gen_1',
  model: 'piflow-emoji',
  seed: 5,
  nfe: 2,
  width: 1,
  height: 1,
  images: [image],
}

/** Serves `text` as an event stream in awkward pieces, with pauses so they arrive as separate reads. */
const serveStream = async (text: string, pieceSize = 7) => {
  server = await startScriptServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'req_s' })
    for (let i = 0; i < text.length; i += pieceSize) {
      res.write(text.slice(i, i + pieceSize))
      await new Promise((r) => setTimeout(r, 1))
    }
    res.end()
  })
  return createClient({ baseUrl: server.url, apiKey: 'k', retry: { delay: 1 } })
}

const SERVER_STREAM = [
  ': hello\r\n\r\n',
  `event: id\r\ndata: {"id":"gen_1"}\r\n\r\n`,
  `event: progress\r\ndata: {"step":1,"nfe":2}\r\n\r\n`,
  ': keepalive\r\n\r\n',
  `event: progress\r\ndata: {"step":2,"nfe":2}\r\n\r\n`,
  `event: image\r\ndata: ${JSON.stringify({ image })}\r\n\r\n`,
  `event: done\r\ndata: ${JSON.stringify(done)}\r\n\r\n`,
].join('')

describe('client.stream', () => {
  it('yields id, progress, image and done from a chunked CRLF stream', async () => {
    const c = await serveStream(SERVER_STREAM)
    const events: StreamEvent[] = []
    for await (const event of c.stream({ prompt: 'a', nfe: 2, seed: 5 })) events.push(event)
    expect(events.map((e) => e.type)).toEqual(['id', 'progress', 'progress', 'image', 'done'])
    expect(events[1]).toEqual({ type: 'progress', step: 1, nfe: 2 })
    const last = events[4] as Extract<StreamEvent, { type: 'done' }>
    expect(last.result.requestId).toBe('req_s')
    expect(last.result.data.images[0]?.data?.[1]).toBe(0x50) // 'P' of the PNG signature
    expect(server?.requests[0]?.headers.accept).toBe('text/event-stream')
    expect(server?.requests[0]?.headers['idempotency-key']).toBeTruthy()
  })

  it('drives callbacks and resolves done() without iteration', async () => {
    const c = await serveStream(SERVER_STREAM, 3)
    const seen: string[] = []
    const result = await c
      .stream(
        { prompt: 'a' },
        {
          onProgress: (p) => seen.push(`progress ${p.step}`),
          onImage: (i) => seen.push(`image ${i.index}`),
        },
      )
      .done()
    expect(seen).toEqual(['progress 1', 'progress 2', 'image 0'])
    expect(result.data.id).toBe('gen_1')
  })

  it('throws the typed ApiError of an `error` event', async () => {
    const c = await serveStream(
      'event: id\ndata: {"id":"gen_1"}\n\nevent: error\ndata: {"error":{"code":"backend_failed","message":"boom"},"requestId":"r9"}\n\n',
    )
    const error = await c
      .stream({ prompt: 'a' })
      .done()
      .catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ code: 'backend_failed', requestId: 'r9', message: 'boom' })
  })

  it('throws NetworkError when the stream ends before done and resume is off', async () => {
    const c = await serveStream(
      'event: id\ndata: {"id":"gen_1"}\n\nevent: progress\ndata: {"step":1,"nfe":4}\n\n',
    )
    const types: string[] = []
    const error = await (async () => {
      for await (const e of c.stream({ prompt: 'a' }, { resume: false })) types.push(e.type)
    })().catch((e) => e)
    expect(types).toEqual(['id', 'progress'])
    expect(error).toBeInstanceOf(NetworkError)
    expect(error.message).toMatch(/client\.resume\('gen_1'\)/)
    expect(server?.requests).toHaveLength(1)
  })

  it('reconnects after a dropped connection with Last-Event-ID: no event lost or repeated', async () => {
    // What the worker sends: ids fixed by each event's place in the complete stream.
    const all = [
      'id: 0\nevent: id\ndata: {"id":"gen_1"}\n\n',
      'id: 1\nevent: progress\ndata: {"step":1,"nfe":2}\n\n',
      'id: 2\nevent: progress\ndata: {"step":2,"nfe":2}\n\n',
      `id: 3\nevent: image\ndata: ${JSON.stringify({ image })}\n\n`,
      `id: 4\nevent: done\ndata: ${JSON.stringify(done)}\n\n`,
    ]
    server = await startScriptServer(async (req, res) => {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'x-request-id': `req_${req.method}`,
      })
      if (req.method === 'POST') {
        res.write(all[0] + all[1])
        await new Promise((r) => setTimeout(r, 20))
        res.destroy() // the connection drops mid-generation
        return
      }
      const after = Number(req.headers['last-event-id'] ?? -1)
      res.end(all.slice(after + 1).join(''))
    })
    const c = createClient({ baseUrl: server.url, apiKey: 'k', retry: { delay: 1 } })
    const events: StreamEvent[] = []
    for await (const e of c.stream({ prompt: 'a', nfe: 2 })) events.push(e)
    expect(events.map((e) => (e.type === 'progress' ? `progress ${e.step}` : e.type))).toEqual([
      'id',
      'progress 1',
      'progress 2',
      'image',
      'done',
    ])
    const resumed = server.requests[1]
    expect(resumed).toMatchObject({ method: 'GET', url: '/v1/generations/gen_1' })
    expect(resumed?.headers).toMatchObject({
      accept: 'text/event-stream',
      'last-event-id': '1',
      authorization: 'Bearer k',
    })
    const last = events.at(-1) as Extract<StreamEvent, { type: 'done' }>
    expect(last.result.requestId).toBe('req_GET')
  })

  it('gives up after retry.limit reconnects with a NetworkError naming client.resume', async () => {
    server = await startScriptServer(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.end('id: 0\nevent: id\ndata: {"id":"gen_9"}\n\n') // ends, never reaches done
    })
    const c = createClient({ baseUrl: server.url, retry: { limit: 2, delay: 1 } })
    const error = await c
      .stream({ prompt: 'a' })
      .done()
      .catch((e) => e)
    expect(error).toBeInstanceOf(NetworkError)
    expect(error.message).toMatch(/client\.resume\('gen_9'\)/)
    expect(server.requests.map((r) => r.method)).toEqual(['POST', 'GET', 'GET'])
  })

  it('client.resume follows a generation by id; a 204 (nothing after Last-Event-ID) yields its result', async () => {
    server = await startScriptServer(async (req, res) => {
      if (req.headers.accept === 'text/event-stream' && req.headers['last-event-id'] === '4') {
        res.writeHead(204).end()
        return
      }
      if (req.headers.accept === 'text/event-stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.end(
          `id: 3\nevent: image\ndata: ${JSON.stringify({ image })}\n\nid: 4\nevent: done\ndata: ${JSON.stringify(done)}\n\n`,
        )
        return
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req_json' })
      res.end(JSON.stringify({ ...done, status: 'succeeded' }))
    })
    const c = createClient({ baseUrl: server.url })
    const types: string[] = []
    for await (const e of c.resume('gen_1', { lastEventId: '2' })) types.push(e.type)
    expect(types).toEqual(['image', 'done'])
    expect(server.requests[0]?.headers['last-event-id']).toBe('2')
    const result = await c.resume('gen_1', { lastEventId: '4' }).done()
    expect(result.data.id).toBe('gen_1')
    expect(result.requestId).toBe('req_json')
  })

  it('releases the connection when the consumer stops early', async () => {
    let closed = false
    server = await startScriptServer(async (_req, res) => {
      res.on('close', () => {
        closed = true
      })
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('event: id\ndata: {"id":"gen_1"}\n\n')
      // Keepalives forever: only the client cancelling the body ends this response.
      while (!closed) {
        res.write(': keepalive\n\n')
        await new Promise((r) => setTimeout(r, 10))
      }
    })
    const c = createClient({ baseUrl: server.url })
    for await (const event of c.stream({ prompt: 'a' })) if (event.type === 'id') break
    while (!closed) await new Promise((r) => setTimeout(r, 10))
    expect(closed).toBe(true)
  })

  it('does not apply the response timeout to a long-running stream body', async () => {
    server = await startScriptServer(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('event: id\ndata: {"id":"gen_1"}\n\n')
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 100))
        res.write(`: keepalive ${i}\n\n`)
      }
      res.end(`event: done\ndata: ${JSON.stringify(done)}\n\n`)
    })
    // 150 ms is the limit for the response to *start*; the body then takes ~500 ms.
    const c = createClient({ baseUrl: server.url, timeout: 150 })
    const result = await c.stream({ prompt: 'a' }).done()
    expect(result.data.id).toBe('gen_1')
  })
})
