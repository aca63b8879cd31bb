/**
 * `POST /v1/generations/:id/cancel` in workerd against real backends. Generations that must still be
 * running when the cancel lands go to the backend slowed to 300 ms per run (test/global-setup.ts), so
 * a 4-NFE generation takes over a second. The cancel request and the job share nothing but the tenant's
 * Ledger (the job learns of the cancel from its `waitForCancel` call), as on two isolates.
 */
import { afterEach, describe, expect, inject, it } from 'vitest'
import { type SseEvent, sseEvents, streamEventTypes } from '../../test/support/sse.ts'
import {
  backendAvailable,
  call,
  callWithVars,
  createKey,
  type ErrorJson,
  generate,
  readSse,
  settleCalls,
} from './helpers.ts'

interface Generation {
  id: string
  status: string
  cached: boolean
  progress: { step: number; nfe: number }
  images: unknown[]
}

const SSE = { Accept: 'text/event-stream' }
const JSON_BODY = { 'Content-Type': 'application/json' }

/** POST /v1/generations on the slowed backend. */
const slowGenerate = (
  body: unknown,
  init: { key?: string; headers?: Record<string, string> } = {},
) =>
  callWithVars(
    { PIFLOW_BACKENDS: JSON.stringify([{ id: 'slow', url: inject('slowBackendUrl') }]) },
    '/v1/generations',
    {
      method: 'POST',
      headers: { ...JSON_BODY, ...init.headers },
      body: JSON.stringify(body),
      ...(init.key === undefined ? {} : { key: init.key }),
    },
  )

const cancel = (id: string, key?: string) =>
  call(`/v1/generations/${id}/cancel`, { method: 'POST', ...(key ? { key } : {}) })

/** The slowed backend's counters (/readyz): proves how many forwards it ran and cancelled. */
async function slowStats(): Promise<{ requests: number; cancelled: number }> {
  const res = await fetch(`${inject('slowBackendUrl')}/readyz`)
  return ((await res.json()) as { stats: { requests: number; cancelled: number } }).stats
}

/** Reads events one at a time from a live SSE response. */
function reader(res: Response) {
  expect(res.headers.get('Content-Type')).toContain('text/event-stream')
  const events = sseEvents(res.body!)
  return {
    async next(): Promise<SseEvent> {
      const { done, value } = await events.next()
      if (done) throw new Error('stream ended early')
      return value
    },
    async rest(): Promise<SseEvent[]> {
      const out: SseEvent[] = []
      for await (const event of events) out.push(event)
      return out
    },
  }
}

/** GET /v1/generations/:id as JSON. */
async function getJson(id: string, key?: string): Promise<Generation> {
  return (await (await call(`/v1/generations/${id}`, key ? { key } : {})).json()) as Generation
}

afterEach(settleCalls)

describe.skipIf(!backendAvailable())('cancel', () => {
  it('stops a streamed generation mid-run: canceled in the answer, GET, SSE, and the backend stops early', async () => {
    const before = await slowStats()
    const stream = reader(await slowGenerate({ prompt: 'red apple' }, { headers: SSE }))
    const first = await stream.next()
    expect(first.event).toBe('id')
    const { id } = JSON.parse(first.data) as { id: string }
    expect((await stream.next()).event).toBe('progress')
    // Cancel while the backend runs the second forward (each run takes 300 ms there).
    while ((await slowStats()).requests - before.requests < 2) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }

    const answer = await cancel(id)
    expect(answer.status).toBe(200)
    const canceled = (await answer.json()) as Generation
    expect(canceled).toMatchObject({ id, status: 'canceled', images: [] })

    const rest = await stream.rest()
    const last = rest.at(-1)!
    expect(last.event).toBe('canceled')
    expect(JSON.parse(last.data)).toEqual({ id, status: 'canceled' })
    expect(last.id).toBe('6') // the terminal event's id (nfe + count + 1), as done / error
    expect(rest.some((e) => e.event === 'image' || e.event === 'done')).toBe(false)
    expect((await getJson(id)).status).toBe('canceled')

    await settleCalls()
    const after = await slowStats()
    // 4 NFEs; the cancel came during the second: the backend saw no third, and cancelled the second.
    expect(after.requests - before.requests).toBe(2)
    expect(after.cancelled - before.cancelled).toBeGreaterThanOrEqual(1)
    // A resumed stream of the canceled generation replays its steps and ends the same way.
    const replay = await readSse(await call(`/v1/generations/${id}`, { headers: SSE }))
    expect(replay.at(-1)).toMatchObject({ event: 'canceled', id: '6' })
  })

  it('a canceled JSON request answers canceled; its Idempotency-Key replays it; quota refunded; nothing cached', async () => {
    const key = await createKey({ rateLimit: { limit: 1, windowSeconds: 600 } })
    const body = { prompt: 'blue heart', seed: 4242 }
    const headers = { 'Idempotency-Key': `cancel-${crypto.randomUUID()}` }
    const pending = slowGenerate(body, { key, headers })
    // While it runs, a retry with the same key is a 409 that names the running generation.
    let id: string | undefined
    for (let i = 0; i < 200 && id === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      const retry = await slowGenerate(body, { key, headers })
      const error = ((await retry.json()) as ErrorJson).error
      const named = retry.status === 409 ? /\((gen_[\w-]+)\)/.exec(error.message)?.[1] : undefined
      // The key is claimed a moment before the record is stored: wait until GET finds it.
      if (named && (await call(`/v1/generations/${named}`, { key })).status === 200) id = named
    }
    expect(id).toBeDefined()
    expect((await cancel(id!, key)).status).toBe(200)
    const res = await pending
    expect(res.status).toBe(200)
    expect(((await res.json()) as Generation).status).toBe('canceled')
    await settleCalls()

    // The same key replays the canceled record (no new run, no quota taken).
    const replayed = await slowGenerate(body, { key, headers })
    expect(replayed.headers.get('Idempotent-Replayed')).toBe('true')
    expect(((await replayed.json()) as Generation).status).toBe('canceled')
    // The quota (1 image per window) was given back: another request runs, and is not a cache hit.
    const again = await generate(body, { key })
    expect(again.status).toBe(200)
    expect(((await again.json()) as Generation).cached).toBe(false)
  })

  it('409 generation_finished for a finished one; 404 for unknown ids and other tenants', async () => {
    const made = (await (await generate({ prompt: 'pear' })).json()) as Generation
    const finished = await cancel(made.id)
    expect(finished.status).toBe(409)
    const body = (await finished.json()) as ErrorJson & { error: { status: string } }
    expect(body.error.code).toBe('generation_finished')
    expect(body.error.status).toBe('succeeded')
    expect(body.error.message).toContain('succeeded')

    for (const [id, key] of [
      ['gen_doesnotexist', undefined],
      ['not-an-id', undefined],
      [made.id, await createKey()],
    ] as const) {
      const res = await cancel(id, key)
      expect(res.status, id).toBe(404)
      expect(((await res.json()) as ErrorJson).error.code).toBe('generation_not_found')
    }
    const readOnly = await createKey({ scopes: ['generations:read'] })
    expect((await cancel(made.id, readOnly)).status).toBe(403)
  })

  it('Prefer: respond-async answers 202 with the id and URLs at once; the generation runs on', async () => {
    const res = await slowGenerate(
      { prompt: 'green leaf' },
      { headers: { Prefer: 'respond-async, wait=5' } },
    )
    expect(res.status).toBe(202)
    expect(res.headers.get('Preference-Applied')).toBe('respond-async')
    const accepted = (await res.json()) as {
      id: string
      status: string
      urls: { get: string; stream: string; cancel: string }
    }
    expect(accepted.status).toBe('running')
    expect(res.headers.get('Location')).toBe(accepted.urls.get)
    expect(new URL(accepted.urls.get).pathname).toBe(`/v1/generations/${accepted.id}`)
    expect(new URL(accepted.urls.cancel).pathname).toBe(`/v1/generations/${accepted.id}/cancel`)
    // Followed by a GET stream to its end: every progress event was recorded for it.
    const events = await readSse(
      await call(new URL(accepted.urls.stream).pathname, { headers: SSE }),
    )
    expect(events.map((e) => e.event)).toEqual(streamEventTypes(4))
    expect((await getJson(accepted.id)).status).toBe('succeeded')

    // Cancelled through its cancel URL while it runs.
    const second = (await (
      await slowGenerate({ prompt: 'red apple' }, { headers: { Prefer: 'respond-async' } })
    ).json()) as { id: string; urls: { cancel: string } }
    const canceled = await call(new URL(second.urls.cancel).pathname, { method: 'POST' })
    expect(canceled.status).toBe(200)
    expect((await getJson(second.id)).status).toBe('canceled')
  })
})
