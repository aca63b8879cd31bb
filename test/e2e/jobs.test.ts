/**
 * Jobs through the real stack (wrangler dev + a backend process slowed to 300 ms per onnxruntime run,
 * so a 4-NFE generation is still running when the test acts): cancel mid-run seen in GET, in the SSE
 * stream and in the backend's own counters; a client token minted with the key that runs, follows and
 * cancels an async generation the key then reads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SseEvent, sseEvents } from '../support/sse.ts'
import { type Stack, startStack } from '../support/stack.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ backendArgs: ['--debug-run-delay-ms', '300'] })
})
afterAll(async () => {
  await stack?.stop()
})

const call = (
  path: string,
  init: { key?: string; method?: string; body?: unknown; headers?: Record<string, string> } = {},
) =>
  fetch(`${stack.workerUrl}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: {
      Authorization: `Bearer ${init.key ?? stack.apiKey}`,
      ...(init.body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...init.headers,
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  })

async function backendStats(): Promise<{ requests: number; cancelled: number }> {
  const res = await fetch(`${stack.backendUrl}/readyz`)
  return ((await res.json()) as { stats: { requests: number; cancelled: number } }).stats
}

async function untilBackendSaw(count: number): Promise<void> {
  while ((await backendStats()).requests < count) await new Promise((r) => setTimeout(r, 10))
}

describe('jobs through the stack', () => {
  it('cancels a running generation: 200 canceled, GET canceled, SSE ends canceled, the backend stops', async () => {
    const before = await backendStats()
    const res = await call('/v1/generations', {
      body: { prompt: 'red apple' },
      headers: { Accept: 'text/event-stream' },
    })
    expect(res.status).toBe(200)
    const events = sseEvents(res.body!)
    const first = (await events.next()).value as SseEvent
    expect(first.event).toBe('id')
    const { id } = JSON.parse(first.data) as { id: string }
    await untilBackendSaw(before.requests + 2) // the second NFE is on the backend now

    const canceled = await call(`/v1/generations/${id}/cancel`, { method: 'POST' })
    expect(canceled.status).toBe(200)
    expect(await canceled.json()).toMatchObject({ id, status: 'canceled' })
    const rest: SseEvent[] = []
    for await (const event of events) rest.push(event)
    expect(rest.at(-1)).toMatchObject({ event: 'canceled', id: '6' })
    expect(JSON.parse(rest.at(-1)!.data)).toEqual({ id, status: 'canceled' })
    expect(rest.map((e) => e.event)).not.toContain('done')
    expect(
      ((await (await call(`/v1/generations/${id}`)).json()) as { status: string }).status,
    ).toBe('canceled')
    // The backend ran no NFE after the one the cancel stopped (4 were planned).
    await new Promise((r) => setTimeout(r, 700))
    const after = await backendStats()
    expect(after.requests - before.requests).toBe(2)
    expect(after.cancelled - before.cancelled).toBeGreaterThanOrEqual(1)

    const again = await call(`/v1/generations/${id}/cancel`, { method: 'POST' })
    expect(again.status).toBe(409)
    expect(await again.json()).toMatchObject({
      error: { code: 'generation_finished', status: 'canceled' },
    })
  })

  it('a client token runs, follows and cancels an async generation of its key', async () => {
    const minted = await call('/v1/tokens', { body: { ttlSeconds: 120 } })
    expect(minted.status).toBe(201)
    const { token, expiresAt } = (await minted.json()) as { token: string; expiresAt: string }
    expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(120_000)
    expect((await call('/v1/tokens', { key: token, body: {} })).status).toBe(403)

    const accepted = await call('/v1/generations', {
      key: token,
      body: { prompt: 'blue heart' },
      headers: { Prefer: 'respond-async' },
    })
    expect(accepted.status).toBe(202)
    const { id, urls } = (await accepted.json()) as { id: string; urls: { cancel: string } }
    expect(accepted.headers.get('Location')).toBe(`${stack.workerUrl}/v1/generations/${id}`)
    const cancel = await fetch(urls.cancel, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    })
    expect(cancel.status).toBe(200)
    // The key owns what its token made.
    const read = (await (await call(`/v1/generations/${id}`)).json()) as { status: string }
    expect(read.status).toBe('canceled')
  })
})
