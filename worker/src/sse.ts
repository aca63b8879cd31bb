/**
 * @module sse
 * Every Server-Sent Events stream of a generation, written here with one event format: the live stream
 * of the POST that runs it ({@link streamJob}), and streams from stored records ({@link streamRecord}:
 * the short streams of cache hits and idempotent replays, and `GET /v1/generations/:id`, which replays
 * the events after `Last-Event-ID` and then follows the running generation through the tenant's Ledger
 * until it ends (`done`, `error` or `canceled`)). Event ids are structural (events.ts), so every stream numbers an event alike.
 */
import type { Context } from 'hono'
import { accepts } from 'hono/accepts'
import { type SSEStreamingApi, streamSSE } from 'hono/streaming'
import type { Ledger } from './durable/ledger.ts'
import {
  imageSeq,
  lastSeq,
  progressSeq,
  recordEvents,
  type StreamEvent,
  terminalSeq,
  terminalType,
} from './events.ts'
import type { AppEnv } from './hono-env.ts'
import type { GenerationJob } from './jobs.ts'
import { isLive } from './lease.ts'
import { watchRevocation } from './middleware/auth.ts'
import type { GenerationRecord } from './records.ts'
import { type RenderOptions, renderGeneration, renderImage } from './render.ts'
import { KEY_REVOKED } from './revocations.ts'

/**
 * True when the client prefers an event stream: RFC 9110 negotiation through Hono's `accepts`, so
 * `text/event-stream;q=0` (not acceptable) or a higher-q `application/json` select JSON.
 */
export const wantsSse = (c: Context<AppEnv>) =>
  accepts(c, {
    header: 'Accept',
    supports: ['application/json', 'text/event-stream'],
    default: 'application/json',
  }) === 'text/event-stream'

/** Headers that keep proxies from buffering or compressing an event stream. */
function unbuffered(c: Context<AppEnv>, response: Response): Response {
  // streamSSE staged `Cache-Control: no-cache` on the context, which Hono merges over the response.
  for (const [name, value] of [
    ['Cache-Control', 'no-cache, no-transform'],
    ['X-Accel-Buffering', 'no'],
  ] as const) {
    c.header(name, value)
    response.headers.set(name, value)
  }
  return response
}

/** `data` of the `id` event (first of every stream). */
function idEventData(record: GenerationRecord) {
  const { request } = record
  return {
    id: record.id,
    status: record.status,
    model: request.model,
    nfe: request.nfe,
    seed: request.seed,
    count: request.count,
    cached: record.cached,
  }
}

/**
 * A `queued` event (`{ id, status, queuePosition }`), sent whenever the position changes. It has no
 * `id:` — it reports a state, not a step of the numbered stream (events.ts) — so resuming after it
 * replays nothing twice; a resumed stream sends the current position instead.
 */
function writeQueued(stream: SSEStreamingApi, id: string, queuePosition: number): Promise<void> {
  const data = JSON.stringify({ id, status: 'queued', queuePosition })
  return stream.writeSSE({ event: 'queued', data })
}

/** `data` of the `error` event. */
function errorEventData(id: string, error: { code: string; message: string }, requestId: string) {
  return { error: { code: error.code, message: error.message }, requestId, id }
}

/** Everything an event's `data` is rendered from. */
interface EventSource {
  record: GenerationRecord
  options: RenderOptions
  requestId: string
  /** PNG bytes at hand by image index (a live stream), sparing inline images an R2 read */
  pngs?: ReadonlyMap<number, Uint8Array>
}

/** The `data` of one event, the same whichever stream sends it. */
async function eventData(event: StreamEvent, from: EventSource): Promise<unknown> {
  const { record, options, pngs } = from
  if (event.type === 'id') return idEventData(record)
  if (event.type === 'progress') return event.progress
  if (event.type === 'image') return renderImage(event.image, options, pngs?.get(event.image.index))
  if (event.type === 'done') return renderGeneration(record, options, pngs)
  if (event.type === 'canceled') return { id: record.id, status: 'canceled' as const }
  return errorEventData(record.id, record.error!, from.requestId)
}

async function writeEvent(
  stream: SSEStreamingApi,
  event: StreamEvent,
  from: EventSource,
): Promise<void> {
  const data = JSON.stringify(await eventData(event, from))
  await stream.writeSSE({ event: event.type, data, id: String(event.seq) })
}

/**
 * Streams `record`'s events after `afterSeq`; while it is running, follows it through `ledger`
 * (keepalive comments while nothing happens) until it ends (`done`, `error`, `canceled`). Dropping this stream, like
 * dropping the POST's, leaves the generation running.
 */
export function streamRecord(
  c: Context<AppEnv>,
  ledger: DurableObjectStub<Ledger>,
  record: GenerationRecord,
  afterSeq: number,
  options: RenderOptions,
): Response {
  const { requestId, settings } = c.var
  return unbuffered(
    c,
    streamSSE(c, async (stream) => {
      const aborted = new Promise<undefined>((resolve) => stream.onAbort(() => resolve(undefined)))
      const revocation = watchRevocation(c, settings.sseKeepaliveMs)
      const revoked = revocation.revoked.then(() => 'revoked' as const)
      const end = terminalSeq(record.request)
      let current = record
      let last = afterSeq
      let position: number | undefined
      try {
        for (;;) {
          for (const event of recordEvents(current, last)) {
            await writeEvent(stream, event, { record: current, options, requestId })
            last = event.seq
          }
          if (last >= end || stream.aborted) return
          if (current.status === 'queued' && current.queuePosition !== position) {
            position = current.queuePosition
            if (position !== undefined) await writeQueued(stream, current.id, position)
          }
          // A dead job's generation comes back from the Ledger as failed (lease.ts): its `error` event
          // is then one of the record's events, as in GET's JSON.
          const next = await Promise.race([
            ledger.watchGeneration(current.id, last, settings.sseKeepaliveMs),
            aborted,
            revoked,
          ])
          if (next === 'revoked') {
            const data = errorEventData(current.id, KEY_REVOKED, requestId)
            await stream.writeSSE({ event: 'error', data: JSON.stringify(data), id: String(end) })
            return
          }
          if (stream.aborted || next === undefined) return
          if (isLive(next) && lastSeq(next) <= last) await stream.write(': keepalive\n\n')
          current = next
        }
      } finally {
        revocation.stop()
      }
    }),
  )
}

/**
 * The live stream of the generation `job` runs (`running` is its first record): `id`, then its
 * progress and images as they happen, then `done`, `error` or `canceled`, with keepalive comments
 * meanwhile.
 * Writes are serialised through one chain; after a disconnect they become no-ops while the job itself
 * runs on, so a resume (`GET` with `Last-Event-ID`) continues where this stopped.
 */
export function streamJob(
  c: Context<AppEnv>,
  job: GenerationJob,
  running: GenerationRecord,
  options: RenderOptions,
): Response {
  const { requestId, settings } = c.var
  const from: EventSource = { record: running, options, requestId, pngs: job.pngs }
  return unbuffered(
    c,
    streamSSE(c, async (stream) => {
      let chain: Promise<unknown> = Promise.resolve()
      const enqueue = (task: () => Promise<unknown>) => {
        chain = chain.then(task).catch(() => undefined)
      }
      const send = (event: StreamEvent, source = from) =>
        stream.aborted ? Promise.resolve() : writeEvent(stream, event, source)
      // Once the id is out, a client may GET it: the running record must be stored by then.
      enqueue(async () => {
        await job.stored.catch(() => undefined)
        await send({ seq: 0, type: 'id' })
        // A generation that starts queued says where; the job reports each later position.
        if (running.status === 'queued' && running.queuePosition !== undefined && !stream.aborted) {
          await writeQueued(stream, running.id, running.queuePosition)
        }
      })
      const keepalive = setInterval(() => {
        enqueue(async () => {
          if (!stream.aborted) await stream.write(': keepalive\n\n')
        })
      }, settings.sseKeepaliveMs)
      const unsubscribe = job.subscribe((event) => {
        if (event.type === 'queued') {
          enqueue(() =>
            stream.aborted ? Promise.resolve() : writeQueued(stream, running.id, event.position),
          )
          return
        }
        const live: StreamEvent =
          event.type === 'progress'
            ? { seq: progressSeq(event.progress.step), type: 'progress', progress: event.progress }
            : {
                seq: imageSeq(running.request, event.image.index),
                type: 'image',
                image: event.image,
              }
        enqueue(() => send(live))
      })
      // A key revoked mid-stream ends the stream (the job runs on; its result stays in the Ledger).
      const revocation = watchRevocation(c, settings.sseKeepaliveMs)
      try {
        const record = await Promise.race([job.done, revocation.revoked.then(() => undefined)])
        await chain
        const end = terminalSeq(running.request)
        if (!record) {
          const data = errorEventData(running.id, KEY_REVOKED, requestId)
          if (!stream.aborted) {
            await stream.writeSSE({ event: 'error', data: JSON.stringify(data), id: String(end) })
          }
        } else {
          await send({ seq: end, type: terminalType(record) }, { ...from, record })
        }
      } finally {
        revocation.stop()
        clearInterval(keepalive)
        unsubscribe()
      }
    }),
  )
}
