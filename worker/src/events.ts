/**
 * @module events
 * The SSE events of a generation and their ids. An id is the event's position in a complete stream,
 * fixed by the request alone:
 *
 *   0 `id` · 1…nfe `progress` (= its step) · nfe+1+i `image` i · nfe+count+1 `done` | `error` | `canceled`
 *
 * so the stream of the POST that started a generation, a cache hit's short stream and a later
 * `GET /v1/generations/:id` resume all number the same event alike, and `Last-Event-ID` means the same
 * thing whichever of them the client read. Ids may skip (a cache hit has no progress events).
 */
import { BadRequestError } from './errors.ts'
import { isLive } from './lease.ts'
import type { GenerationRecord, NormalizedRequest, ProgressInfo, StoredImage } from './records.ts'

/** One event of a generation's stream, before rendering. */
export type StreamEvent =
  | { seq: number; type: 'id' }
  | { seq: number; type: 'progress'; progress: ProgressInfo }
  | { seq: number; type: 'image'; image: StoredImage }
  | { seq: number; type: 'done' }
  | { seq: number; type: 'error' }
  | { seq: number; type: 'canceled' }

/** The event that ends a finished record's stream. */
export function terminalType(record: GenerationRecord): 'done' | 'error' | 'canceled' {
  if (record.status === 'canceled') return 'canceled'
  return record.error ? 'error' : 'done'
}

type Shape = Pick<NormalizedRequest, 'nfe' | 'count'>

export const progressSeq = (step: number) => step
export const imageSeq = (request: Shape, index: number) => request.nfe + 1 + index
/** The id of the last event (`done` or `error`) of every stream of this request. */
export const terminalSeq = (request: Shape) => request.nfe + request.count + 1

/** Drops the preview data URI: records keep it for the latest step only (a few KB each). */
export function withoutPreview(progress: ProgressInfo): ProgressInfo {
  const { preview: _preview, previewKind: _kind, ...rest } = progress
  return rest
}

/** The events a record implies so far, in order, keeping those after `afterSeq`. */
export function recordEvents(record: GenerationRecord, afterSeq = -1): StreamEvent[] {
  const { request } = record
  const events: StreamEvent[] = [{ seq: 0, type: 'id' }]
  for (const progress of record.steps ?? []) {
    events.push({ seq: progressSeq(progress.step), type: 'progress', progress })
  }
  for (const image of record.images) {
    events.push({ seq: imageSeq(request, image.index), type: 'image', image })
  }
  if (!isLive(record)) {
    events.push({ seq: terminalSeq(request), type: terminalType(record) })
  }
  return events.filter((event) => event.seq > afterSeq)
}

/** The id of the newest event the record implies (what a follower has seen once it sent it). */
export function lastSeq(record: GenerationRecord): number {
  return recordEvents(record).at(-1)!.seq
}

/**
 * The event id a resume starts after: the `Last-Event-ID` header (what EventSource sends on reconnect)
 * or `?lastEventId=` (for clients that cannot set headers); -1 (from the start) when neither is given.
 * Anything that is not an id of this generation's stream is a 400, not a silent full replay.
 */
export function parseLastEventId(raw: string | undefined, request: Shape): number {
  if (raw === undefined || raw.trim() === '') return -1
  const value = raw.trim()
  const seq = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN
  if (!(seq <= terminalSeq(request))) {
    throw new BadRequestError(
      'invalid_last_event_id',
      `Last-Event-ID must be an event id of this generation's stream (0…${terminalSeq(request)})`,
    )
  }
  return seq
}
