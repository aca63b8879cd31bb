/**
 * The admission queue through the real stack: a backend that reports room for two generations
 * (`--max-batch-size 1 --queue-limit 1`, slowed to 300 ms per run) and PIFLOW_QUEUE_LIMIT=1. Two
 * generations run, the third waits as `queued` (GET, SSE `event: queued`) and runs once a slot frees,
 * a fourth is shed with 503 queue_full + Retry-After, and a queued one can be cancelled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SseEvent, sseEvents } from '../support/sse.ts'
import { type Stack, startStack } from '../support/stack.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({
    backendArgs: ['--max-batch-size', '1', '--queue-limit', '1', '--debug-run-delay-ms', '300'],
    env: { PIFLOW_QUEUE_LIMIT: '1' },
  })
})
afterAll(async () => {
  await stack?.stop()
})

const call = (
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
) =>
  fetch(`${stack.workerUrl}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: {
      Authorization: `Bearer ${stack.apiKey}`,
      ...(init.body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...init.headers,
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  })

const submit = async (prompt: string) => {
  const res = await call('/v1/generations', {
    body: { prompt },
    headers: { Prefer: 'respond-async' },
  })
  return {
    res,
    body: (await res.json()) as { id: string; status: string; error?: { code: string } },
  }
}

interface Generation {
  id: string
  status: string
  queuePosition?: number
}
const get = async (id: string) => (await (await call(`/v1/generations/${id}`)).json()) as Generation

async function until(id: string, done: (g: Generation) => boolean): Promise<Generation> {
  for (;;) {
    const g = await get(id)
    if (done(g)) return g
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('admission queue', () => {
  it('queues past capacity, reports the position, sheds past the bound, runs the queued one later', async () => {
    const a = await submit('red apple')
    const b = await submit('green leaf')
    expect([a.body.status, b.body.status]).toEqual(['running', 'running'])
    const c = await submit('blue heart')
    expect(c.res.status).toBe(202)
    expect(c.body.status).toBe('queued')
    expect(await get(c.body.id)).toMatchObject({ status: 'queued', queuePosition: 1 })

    const shed = await submit('yellow star')
    expect(shed.res.status).toBe(503)
    expect(shed.body.error?.code).toBe('queue_full')
    expect(Number(shed.res.headers.get('Retry-After'))).toBeGreaterThanOrEqual(1)

    // Its stream says queued first, then runs it to the end once a slot is free.
    const res = await call(`/v1/generations/${c.body.id}`, {
      headers: { Accept: 'text/event-stream' },
    })
    const events: SseEvent[] = []
    for await (const event of sseEvents(res.body!)) events.push(event)
    const types = events.map((e) => e.event)
    expect(types.slice(0, 2)).toEqual(['id', 'queued'])
    expect(JSON.parse(events[0]!.data)).toMatchObject({ id: c.body.id, status: 'queued' })
    expect(JSON.parse(events[1]!.data)).toEqual({
      id: c.body.id,
      status: 'queued',
      queuePosition: 1,
    })
    expect(events[1]!.id).toBeUndefined()
    expect(types.slice(2)).toEqual([
      'progress',
      'progress',
      'progress',
      'progress',
      'image',
      'done',
    ])
    for (const g of [a, b])
      expect((await until(g.body.id, (x) => x.status !== 'running')).status).toBe('succeeded')
  })

  it('a queued generation can be cancelled from its live stream, and frees its place', async () => {
    const a = await submit('red apple')
    const b = await submit('green leaf')
    // Its own POST's stream: id (status queued), then queued with its position.
    const live = await call('/v1/generations', {
      body: { prompt: 'blue heart' },
      headers: { Accept: 'text/event-stream' },
    })
    const stream = sseEvents(live.body!)
    const first = (await stream.next()).value as SseEvent
    const second = (await stream.next()).value as SseEvent
    const c = { body: JSON.parse(first.data) as { id: string; status: string } }
    expect(c.body.status).toBe('queued')
    expect(second.event).toBe('queued')
    expect(JSON.parse(second.data)).toEqual({ id: c.body.id, status: 'queued', queuePosition: 1 })
    const canceled = await call(`/v1/generations/${c.body.id}/cancel`, { method: 'POST' })
    expect(canceled.status).toBe(200)
    expect(((await canceled.json()) as Generation).status).toBe('canceled')
    const rest: SseEvent[] = []
    for await (const event of stream) rest.push(event)
    expect(rest.map((e) => e.event)).toEqual(['canceled'])
    // The queue has room again (its place was freed by the cancel, not by a lease running out).
    await until(c.body.id, (g) => g.status === 'canceled')
    let d = await submit('pear')
    for (let i = 0; i < 40 && d.res.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 25))
      d = await submit('pear')
    }
    expect(d.res.status).toBe(202)
    for (const g of [a, b, d]) {
      expect(
        (await until(g.body.id, (x) => x.status !== 'running' && x.status !== 'queued')).status,
      ).toBe('succeeded')
    }
  })
})
