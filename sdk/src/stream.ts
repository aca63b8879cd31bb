/**
 * @module stream
 * Streaming and reconnects: a generation's events from the POST's response, or (`resume`) from an id.
 * When the connection drops before `done`, the stream reconnects with `Last-Event-ID` (up to
 * `retry.limit` times, with the retry backoff), so a flaky network costs a reconnect, never a lost or
 * duplicated event. Once the id is known, the caller's abort also cancels the generation on the
 * server (unless `cancelOnAbort: false`). A chunk of its own, loaded by the first stream (client.ts),
 * so the root entry stays within its size budget.
 */

import { emitter } from './callbacks.ts'
import { NetworkError, PiflowError } from './errors.ts'
import { type FallbackOptions, fallsBack, type LocalLoader } from './fallback.ts'
import { apiErrorFrom, backoffDelay, type Http, jitter, toPiflowError } from './http.ts'
import { parseSse } from './sse.ts'
import type {
  GenerateInput,
  GenerateOptions,
  RetryOptions,
  StreamCallbacks,
  StreamEvent,
  StreamResumeOptions,
} from './types.ts'
import {
  callJson,
  cancelGeneration,
  followGeneration,
  generationPath,
  now,
  parseJson,
  postGeneration,
  toGeneration,
  toImage,
  toResult,
} from './wire.ts'

export type StreamOptions = GenerateOptions & StreamCallbacks & StreamResumeOptions

/** Where a stream starts: a new generation, or an earlier one by id. */
export type StreamStart = { input: GenerateInput } | { id: string; lastEventId?: string }

/** The retry policy's delay before reconnect `attempt` (1-based), as ky waits between retries. */
const backoff = (retry: Required<RetryOptions>, attempt: number) =>
  jitter(Math.min(backoffDelay(retry, attempt), retry.maxDelay))

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })

/** The event generator behind `stream` and `resume` of one client. */
export const createStreaming = (
  http: Http,
  retry: Required<RetryOptions>,
  options: FallbackOptions,
  loadLocal: LocalLoader,
) => {
  async function* streamEvents(
    start: StreamStart,
    opts: StreamOptions,
  ): AsyncGenerator<StreamEvent> {
    const emit = emitter(opts)
    const { signal } = opts
    const started = now()
    let id = 'id' in start ? start.id : undefined
    let lastEventId = 'id' in start ? start.lastEventId : undefined
    // Cancels the generation on the server when the caller aborts, once its id is known: by default
    // for a generation this stream started, only on request for one it follows (`resume`).
    const cancels = 'input' in start ? opts.cancelOnAbort !== false : opts.cancelOnAbort === true
    let stopWatching: (() => void) | undefined
    const watchAbort = (known: string) => {
      if (!signal || !cancels || stopWatching) return
      const onAbort = () => void cancelGeneration(http, known, {}).catch(() => {})
      signal.addEventListener('abort', onAbort, { once: true })
      stopWatching = () => signal.removeEventListener('abort', onAbort)
    }
    let response: Response
    try {
      response =
        'input' in start
          ? await postGeneration(http, start.input, opts, 'text/event-stream')
          : await followGeneration(http, start.id, lastEventId, opts)
    } catch (error) {
      if (!('input' in start) || !fallsBack(options, error, signal)) throw error
      yield* (await loadLocal()).stream(start.input, opts)
      return
    }
    if (id !== undefined) watchAbort(id)
    const limit = opts.resume === false ? 0 : retry.limit
    try {
      for (let reconnects = 0; ; reconnects++) {
        if (response.status === 204) {
          // Nothing after Last-Event-ID: the stream had ended; the stored record is the outcome.
          const result = await callJson(http, generationPath(id ?? ''), opts, toGeneration)
          if (result.data.status === 'canceled')
            yield emit({ type: 'canceled', id: result.data.id })
          else yield emit({ type: 'done', result })
          return
        }
        if (!response.body) throw new PiflowError('The stream response has no body')
        let dropped: PiflowError
        try {
          for await (const message of parseSse(response.body)) {
            if (message.id !== undefined) lastEventId = message.id
            const data = parseJson(message.data)
            const { event } = message
            // The stream itself was a 200; the failed generation's own status is not sent, so 500.
            if (event === 'error') throw apiErrorFrom(500, response.headers, data)
            if (event === 'id') {
              id = String(data.id)
              watchAbort(id)
              yield emit({ ...data, type: 'id', id })
            } else if (event === 'queued' || event === 'progress')
              yield emit({ ...data, type: event })
            else if (event === 'image')
              yield emit({ type: 'image', image: toImage(data.image ?? data) })
            else if (event === 'canceled') {
              yield emit({ type: 'canceled', id: String(data.id ?? id) })
              return
            } else if (event === 'done') {
              yield emit({
                type: 'done',
                result: toResult(toGeneration(data), response, data, started),
              })
              return
            }
            // Other event types (added by a newer API) are skipped.
          }
          dropped = new NetworkError('The event stream ended before `done`')
        } catch (error) {
          if (signal?.aborted) throw signal.reason
          const mapped = toPiflowError(error)
          if (!(mapped instanceof NetworkError)) throw mapped
          dropped = mapped
        }
        // The connection dropped mid-generation. Nothing is lost server-side: follow it by id.
        if (id === undefined || reconnects >= limit || signal?.aborted) {
          const how = id === undefined ? 'client.get' : `client.resume('${id}')`
          throw new NetworkError(`${dropped.message}; resume with ${how}`, { cause: dropped })
        }
        await sleep(backoff(retry, reconnects + 1), signal)
        response = await followGeneration(http, id, lastEventId, opts)
      }
    } finally {
      stopWatching?.()
    }
  }

  return streamEvents
}
