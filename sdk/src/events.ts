/**
 * @module events
 * A generation's events as a {@link GenerationStream} (iterate it, or await `done()`), shared by the
 * remote stream and the local generator, so both have one shape.
 */
import { GenerationCanceledError, PiflowError } from './errors.ts'
import type { Generation, GenerationStream, Result, StreamEvent } from './types.ts'

/** Wraps an event generator as a {@link GenerationStream}. */
export const asStream = (events: AsyncGenerator<StreamEvent>): GenerationStream => {
  let last: Result<Generation> | undefined
  let canceled: string | undefined
  const iterate = async function* () {
    for await (const event of events) {
      if (event.type === 'done') last = event.result
      if (event.type === 'canceled') canceled = event.id
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
        if (canceled !== undefined) throw new GenerationCanceledError(canceled)
        if (!last) throw new PiflowError('The stream ended without a result')
        return last
      })()
      return drained
    },
  }
}
