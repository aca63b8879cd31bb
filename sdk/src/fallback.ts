/**
 * @module fallback
 * `fallback: 'local'`: when the edge is unreachable or says the model should run here, the client
 * generates in the page with `@piflow/sdk/local`, which is imported on first use so the root entry
 * stays free of inference code. Never on auth or validation errors.
 */
import { ApiError, NetworkError } from './errors.ts'
import type { LocalGenerator, LocalOptions } from './local/types.ts'
import type { GenerateInput, RequestOptions, StreamEvent } from './types.ts'

/**
 * Error codes with which the edge says it cannot run the model now, so the browser may: an explicit
 * `run_locally`, or no inference backend configured / reachable (after retries).
 */
export const LOCAL_FALLBACK_CODES: readonly string[] = [
  'run_locally',
  'no_backends',
  'backends_unavailable',
]

/** Options of a client that decide its fallback. */
export interface FallbackOptions {
  fallback?: 'local' | false
  local?: LocalOptions
}

/** Whether `error` (of a call its caller did not abort) sends the call to the local path. */
export const fallsBack = (options: FallbackOptions, error: unknown, signal?: AbortSignal) =>
  options.fallback === 'local' &&
  !signal?.aborted &&
  (error instanceof NetworkError ||
    (error instanceof ApiError && LOCAL_FALLBACK_CODES.includes(error.code)))

/** The local generator of one client, created on first use (a lazily imported chunk). */
export const createLocalLoader = (options: FallbackOptions) => {
  let local: Promise<LocalGenerator> | undefined
  return () => {
    local ??= import('./local/index.ts').then((m) => m.createLocalGenerator(options.local))
    return local
  }
}

export type LocalLoader = ReturnType<typeof createLocalLoader>

/**
 * A local generation as stream events, yielded while it runs: `id` once the request is normalised,
 * `progress` per NFE, then `image`s and `done` (the same sequence as the API's stream).
 */
export async function* localEvents(
  local: LocalGenerator,
  input: GenerateInput,
  opts: RequestOptions,
  emit: (event: StreamEvent) => StreamEvent,
): AsyncGenerator<StreamEvent> {
  const queue: StreamEvent[] = []
  let wake: (() => void) | undefined
  let settled = false
  const push = (event: StreamEvent) => {
    queue.push(event)
    wake?.()
  }
  const running = local
    .generate(input, {
      ...opts,
      onStart: (info) => push({ type: 'id', ...info }),
      onProgress: (p) => push({ type: 'progress', ...p }),
    })
    .finally(() => {
      settled = true
      wake?.()
    })
  running.catch(() => {}) // rethrown by the await below, after the queued events
  while (true) {
    while (queue.length > 0) yield emit(queue.shift()!)
    if (settled) break
    await new Promise<void>((resolve) => {
      wake = resolve
    })
  }
  const result = await running
  for (const image of result.data.images) yield emit({ type: 'image', image })
  yield emit({ type: 'done', result })
}
