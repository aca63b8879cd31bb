/**
 * SSE resume: `GET /v1/generations/:id` with `Accept: text/event-stream` replays the events after
 * `Last-Event-ID` and follows a running generation to its end. Generations that must still be running
 * when the client comes back go to a backend slowed to 300 ms per run (test/global-setup.ts): the
 * request's env points PIFLOW_BACKENDS at it, everything else (KV, Durable Objects, R2) is shared.
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
  progress: { step: number; nfe: number }
  images: { sha256: string }[]
}

const SSE = { Accept: 'text/event-stream' }
/** The worker with its backend list replaced by `url`. */
const fetchWith = (url: string, path: string, init?: RequestInit) =>
  callWithVars({ PIFLOW_BACKENDS: JSON.stringify([{ id: 'other', url }]) }, path, init)
const slow = (path: string, init?: RequestInit) => fetchWith(inject('slowBackendUrl'), path, init)

// Jobs run under waitUntil; let them finish before the next test.
afterEach(settleCalls)

/** An SSE response read event by event, which the client can drop at any point. */
function open(res: Response) {
  expect(res.status).toBe(200)
  expect(res.headers.get('Content-Type')).toContain('text/event-stream')
  const reader = res.body!.getReader()
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read()
      if (done) controller.close()
      else controller.enqueue(value)
    },
  })
  const events = sseEvents(body)
  return {
    async take(n: number): Promise<SseEvent[]> {
      const out: SseEvent[] = []
      while (out.length < n) {
        const { done, value } = await events.next()
        if (done) break
        out.push(value)
      }
      return out
    },
    rest: async () => {
      const out: SseEvent[] = []
      for await (const event of events) out.push(event)
      return out
    },
    /** the client goes away (the worker sees the response body cancelled) */
    drop: () => reader.cancel(),
  }
}

const getJson = async (id: string) =>
  (await (await call(`/v1/generations/${id}`)).json()) as Generation
const resume = (id: string, lastEventId?: string, query = '') =>
  call(`/v1/generations/${id}${query}`, {
    headers: { ...SSE, ...(lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId }) },
  })

describe.skipIf(!backendAvailable())('SSE resume (GET /v1/generations/:id as a stream)', () => {
  it('a dropped stream resumes after Last-Event-ID and follows the running generation', async () => {
    const post = open(
      await slow('/v1/generations', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...SSE },
        body: JSON.stringify({ prompt: 'red apple' }),
      }),
    )
    const first = await post.take(2)
    expect(first.map((e) => [e.event, e.id])).toEqual([
      ['id', '0'],
      ['progress', '1'],
    ])
    await post.drop()
    const id = JSON.parse(first[0]!.data).id as string
    // Still running: what follows must come from following it, not from a finished record.
    expect((await getJson(id)).status).toBe('running')

    // Resume from the header, drop again after one event, resume from the query parameter.
    const second = open(await resume(id, first[1]!.id))
    const middle = await second.take(1)
    await second.drop()
    expect(middle.map((e) => [e.event, e.id])).toEqual([['progress', '2']])
    expect((await getJson(id)).status).toBe('running')
    const tail = await open(await resume(id, undefined, `?lastEventId=${middle[0]!.id}`)).rest()

    const all = [...first, ...middle, ...tail]
    expect(all.map((e) => e.event)).toEqual(streamEventTypes(4))
    expect(all.map((e) => e.id)).toEqual(['0', '1', '2', '3', '4', '5', '6'])
    expect(all.slice(1, 5).map((e) => JSON.parse(e.data).step)).toEqual([1, 2, 3, 4])
    const done = JSON.parse(all[6]!.data) as Generation
    expect(done).toMatchObject({ id, status: 'succeeded', progress: { step: 4, nfe: 4 } })
    expect(JSON.parse(all[5]!.data).sha256).toBe(done.images[0]!.sha256)
    expect(await getJson(id)).toEqual(done)
  })

  it('a finished generation replays in full, or only what follows Last-Event-ID; 204 after the end', async () => {
    const made = (await (await generate({ prompt: 'pear' })).json()) as Generation
    const full = await readSse(await resume(made.id))
    expect(full.map((e) => e.event)).toEqual(streamEventTypes(4))
    expect(full.map((e) => e.id)).toEqual(['0', '1', '2', '3', '4', '5', '6'])
    expect(JSON.parse(full[0]!.data)).toMatchObject({ id: made.id, status: 'succeeded', nfe: 4 })
    expect(full.slice(1, 5).map((e) => JSON.parse(e.data).step)).toEqual([1, 2, 3, 4])
    expect(JSON.parse(full[6]!.data)).toEqual(made)

    const rest = await readSse(await resume(made.id, '4'))
    expect(rest.map((e) => [e.event, e.id])).toEqual([
      ['image', '5'],
      ['done', '6'],
    ])
    const finished = await resume(made.id, '6')
    expect(finished.status).toBe(204)
    expect(await finished.text()).toBe('')
  })

  it('a live stream of several images sends them in index order, ids increasing', async () => {
    // Their R2 writes run concurrently; the events must still go out in order for resumes.
    const events = await readSse(
      await generate({ prompt: 'green leaf', count: 3 }, { headers: SSE }),
    )
    const images = events.filter((e) => e.event === 'image')
    expect(images.map((e) => JSON.parse(e.data).index)).toEqual([0, 1, 2])
    expect(events.map((e) => Number(e.id))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
  })

  it('a cache hit streams one progress per NFE (no previews), under the same ids', async () => {
    const body = { prompt: 'blue heart', seed: 31_337, count: 2 }
    await generate(body)
    const hit = await readSse(await generate(body, { headers: SSE }))
    expect(hit.map((e) => [e.event, e.id])).toEqual([
      ['id', '0'],
      ['progress', '1'],
      ['progress', '2'],
      ['progress', '3'],
      ['progress', '4'],
      ['image', '5'],
      ['image', '6'],
      ['done', '7'],
    ])
    const id = JSON.parse(hit[0]!.data).id as string
    expect(JSON.parse(hit[0]!.data).cached).toBe(true)
    const steps = hit.slice(1, 5).map((e) => JSON.parse(e.data))
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4])
    expect(steps.every((s) => s.nfe === 4 && s.preview === undefined)).toBe(true)
    // σ falls to 0 over the schedule, as in a generated stream.
    expect(steps.at(-1).sigma).toBe(0)
    const rest = await readSse(await resume(id, '5'))
    expect(rest.map((e) => [e.event, e.id])).toEqual([
      ['image', '6'],
      ['done', '7'],
    ])
  })

  it('a failed generation replays its error as the last event', async () => {
    // A backend base path the backend does not serve: its first forward is refused (404).
    const res = await fetchWith(`${inject('backendUrl')}/missing`, '/v1/generations', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'broken' }),
    })
    expect(res.status).toBeGreaterThanOrEqual(502)
    const failed = (await res.json()) as ErrorJson & { generationId: string }
    const events = await readSse(await resume(failed.generationId))
    expect(events.map((e) => [e.event, e.id])).toEqual([
      ['id', '0'],
      ['error', '6'],
    ])
    expect(JSON.parse(events[1]!.data)).toMatchObject({
      id: failed.generationId,
      error: { code: failed.error.code },
    })
    expect((await readSse(await resume(failed.generationId, '0'))).map((e) => e.event)).toEqual([
      'error',
    ])
  })

  it('bad Last-Event-ID is a 400; another key’s generation is a 404; JSON ignores the header', async () => {
    const made = (await (await generate({ prompt: 'plum' })).json()) as Generation
    for (const bad of ['abc', '-1', '1.5', '7', '1e1', 'gen_x:1']) {
      const res = await resume(made.id, bad)
      expect(res.status, bad).toBe(400)
      expect(((await res.json()) as ErrorJson).error.code).toBe('invalid_last_event_id')
    }
    const viaQuery = await resume(made.id, undefined, '?lastEventId=x')
    expect(viaQuery.status).toBe(400)
    const other = await call(`/v1/generations/${made.id}`, {
      key: await createKey(),
      headers: { ...SSE, 'Last-Event-ID': '1' },
    })
    expect(other.status).toBe(404)
    expect(((await other.json()) as ErrorJson).error.code).toBe('generation_not_found')
    const json = await call(`/v1/generations/${made.id}`, { headers: { 'Last-Event-ID': 'abc' } })
    expect(json.status).toBe(200)
  })
})
