/**
 * @module stream
 * Streaming and reconnects: a generation's events from the POST's response, or (`resume`) from an id.
 * When the connection drops before `done`, the stream reconnects with `Last-Event-ID` (up to
 * `retry.limit` times, with the retry backoff), so a flaky network costs a reconnect, never a lost or
 * duplicated event.
 */

import type { KyInstance } from 'ky'
import { NetworkError, PiflowError } from './errors.ts'
import { type FallbackOptions, fallsBack, type LocalLoader, localEvents } from './fallback.ts'
import { apiErrorFrom, backoffDelay, jitter, toPiflowError } from './http.ts'
import { parseSse } from './sse.ts'
import type {
  GenerateInput,
  Generation,
  GenerationStream,
  RequestOptions,
  Result,
  RetryOptions,
  StreamCallbacks,
  StreamEvent,
  StreamResumeOptions,
} from './types.ts'
import {
  followGeneration,
  generationPath,
  getJson,
  now,
  parseJson,
  postGeneration,
  toGeneration,
  toImage,
  toResult,
} from './wire.ts'

type StreamOptions = RequestOptions & StreamCallbacks & StreamResumeOptions

/** Where a stream starts: a new generation, or an earlier one by id. */
type StreamStart = { input: GenerateInput } | { id: string; lastEventId?: string }

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

/** Wraps an event generator as a {@link GenerationStream}. */
const asStream = (events: AsyncGenerator<StreamEvent>): GenerationStream => {
  let last: Result<Generation> | undefined
  const iterate = async function* () {
    for await (const event of events) {
      if (event.type === 'done') last = event.result
      yield event
    }
  }
  const iterator = iterate()
  let drained: Promise<Result<Generation>> | undefined
  return {
    [Symbol.asyncIterator]: () => iterator,
    done: () => {
      drained ??= (async () => {
        for await (const _ of iterator);
        if (!last) throw new PiflowError('The stream ended without a result')
        return last
      })()
      return drained
    },
  }
}

/** `stream` and `resume` of one client. */
export const createStreaming = (
  http: KyInstance,
  retry: Required<RetryOptions>,
  options: FallbackOptions,
  loadLocal: LocalLoader,
) => {
  async function* streamEvents(
    start: StreamStart,
    opts: StreamOptions,
  ): AsyncGenerator<StreamEvent> {
    const emit = (event: StreamEvent) => {
      opts.onEvent?.(event)
      if (event.type === 'progress') opts.onProgress?.(event)
      if (event.type === 'image') opts.onImage?.(event.image)
      return event
    }
    const started = now()
    let id = 'id' in start ? start.id : undefined
    let lastEventId = 'id' in start ? start.lastEventId : undefined
    let response: Response
    try {
      response =
        'input' in start
          ? await postGeneration(http, start.input, opts, 'text/event-stream')
          : await followGeneration(http, start.id, lastEventId, opts)
    } catch (error) {
      const mapped = toPiflowError(error)
      if (!('input' in start) || !fallsBack(options, mapped, opts.signal)) throw mapped
      yield* localEvents(await loadLocal(), start.input, opts, emit)
      return
    }
    const limit = opts.resume === false ? 0 : retry.limit
    for (let reconnects = 0; ; reconnects++) {
      if (response.status === 204) {
        // Nothing after Last-Event-ID: the stream had ended; the stored result is the outcome.
        const result = await getJson(http, generationPath(id ?? ''), opts, toGeneration)
        yield emit({ type: 'done', result })
        return
      }
      if (!response.body) throw new PiflowError('The stream response has no body')
      let dropped: PiflowError
      try {
        for await (const message of parseSse(response.body)) {
          if (message.id !== undefined) lastEventId = message.id
          const data = parseJson(message.data)
          // The stream itself was a 200; the failed generation's own status is not sent, so 500.
          if (message.event === 'error') throw apiErrorFrom(500, response.headers, data)
          if (message.event === 'id') {
            id = String(data.id)
            yield emit({ ...data, type: 'id', id })
          } else if (message.event === 'progress') yield emit({ type: 'progress', ...data })
          else if (message.event === 'image')
            yield emit({ type: 'image', image: toImage(data.image ?? data) })
          else if (message.event === 'done') {
            yield emit({
              type: 'done',
              result: toResult(toGeneration(data), response, data, started),
            })
            return
          }
        }
        dropped = new NetworkError('The event stream ended before `done`')
      } catch (error) {
        const mapped = toPiflowError(error)
        if (!(mapped instanceof NetworkError)) throw mapped
        dropped = mapped
      }
      // The connection dropped mid-generation. Nothing is lost server-side: follow it by id.
      if (id === undefined || reconnects >= limit || opts.signal?.aborted) {
        const how = id === undefined ? 'client.get' : `client.resume('${id}')`
        throw new NetworkError(`${dropped.message}; resume with ${how}`, { cause: dropped })
      }
      await sleep(backoff(retry, reconnects + 1), opts.signal)
      try {
        response = await followGeneration(http, id, lastEventId, opts)
      } catch (error) {
        throw toPiflowError(error)
      }
    }
  }

  return {
    stream: (input: GenerateInput, opts: StreamOptions = {}) =>
      asStream(streamEvents({ input }, opts)),
    resume: (id: string, opts: StreamOptions & { lastEventId?: string } = {}) =>
      asStream(
        streamEvents(
          { id, ...(opts.lastEventId === undefined ? {} : { lastEventId: opts.lastEventId }) },
          opts,
        ),
      ),
  }
}
