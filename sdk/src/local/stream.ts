/**
 * @module local/stream
 * A local generation as the API's stream events, yielded while it runs: `id` once the request is
 * normalised, `progress` per NFE, then `image`s and `done` (the remote stream's sequence and shapes).
 */
import { emitter } from '../callbacks.ts'
import type { GenerateInput, StreamCallbacks, StreamEvent } from '../types.ts'
import type { LocalGenerateOptions, LocalGenerator } from './types.ts'

export async function* localEvents(
  generate: LocalGenerator['generate'],
  input: GenerateInput,
  opts: LocalGenerateOptions & StreamCallbacks,
): AsyncGenerator<StreamEvent> {
  const emit = emitter(opts)
  const queue: StreamEvent[] = []
  let wake: (() => void) | undefined
  let settled = false
  const push = (event: StreamEvent) => {
    queue.push(event)
    wake?.()
  }
  // The caller's callbacks run from `emit`, as the events are yielded.
  const running = generate(input, {
    ...opts,
    onStart: (info) => {
      opts.onStart?.(info)
      push({ type: 'id', ...info })
    },
    onProgress: push,
  }).finally(() => {
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
