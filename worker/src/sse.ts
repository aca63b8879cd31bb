/**
 * @module sse
 * Server-Sent Events from stored records: the short streams of cache hits and idempotent replays, and
 * `GET /v1/generations/:id` streams, which replay the events after `Last-Event-ID` and then follow the
 * running generation through the tenant's Ledger until `done` or `error`. The POST that runs a
 * generation streams its live events itself (routes/generations.ts), with the same ids (events.ts).
 */
import type { Context } from 'hono'
import { accepts } from 'hono/accepts'
import { type SSEStreamingApi, streamSSE } from 'hono/streaming'
import type { Ledger } from './durable/ledger.ts'
import { lastSeq, recordEvents, type StreamEvent, terminalSeq } from './events.ts'
import type { AppEnv } from './hono-env.ts'
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
export function unbuffered(c: Context<AppEnv>, response: Response): Response {
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
export function idEventData(record: GenerationRecord) {
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

/** `data` of the `error` event. */
export function errorEventData(
  id: string,
  error: { code: string; message: string },
  requestId: string,
) {
  return { error: { code: error.code, message: error.message }, requestId, id }
}

async function writeEvent(
  stream: SSEStreamingApi,
  event: StreamEvent,
  record: GenerationRecord,
  options: RenderOptions,
  requestId: string,
): Promise<void> {
  let data: unknown
  if (event.type === 'id') data = idEventData(record)
  else if (event.type === 'progress') data = event.progress
  else if (event.type === 'image') data = await renderImage(event.image, options)
  else if (event.type === 'done') data = await renderGeneration(record, options)
  else data = errorEventData(record.id, record.error!, requestId)
  await stream.writeSSE({ event: event.type, data: JSON.stringify(data), id: String(event.seq) })
}

/**
 * Streams `record`'s events after `afterSeq`; while it is running, follows it through `ledger`
 * (keepalive comments while nothing happens) until `done` or `error`. Dropping this stream, like
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
      try {
        for (;;) {
          for (const event of recordEvents(current, last)) {
            await writeEvent(stream, event, current, options, requestId)
            last = event.seq
          }
          if (last >= end || stream.aborted) return
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
          if (next.status === 'running' && lastSeq(next) <= last)
            await stream.write(': keepalive\n\n')
          current = next
        }
      } finally {
        revocation.stop()
      }
    }),
  )
}
