/**
 * @module cancellations
 * Forwards and steps in flight by the caller's request id (`X-Piflow-Request-Id`, PROTOCOL.md), so
 * `POST /v1/requests/:id/cancel` can stop them: a queued forward is dropped and never runs, a running
 * one answers 499 at once and its result is discarded (the batcher's abort path). The worker sends
 * its generation id, so one cancel stops whatever that generation has in flight here, even when the
 * worker's own connection is slow to close.
 */
import { BackendError } from './errors.ts'

export interface Cancellations {
  /** Registers a request under `id` (none without one); returns its signal and the release. */
  track(id: string | undefined): { signal: AbortSignal | undefined; release: () => void }
  /** Aborts every request in flight under `id`; returns how many there were. */
  cancel(id: string): number
}

export function createCancellations(): Cancellations {
  const live = new Map<string, Set<AbortController>>()
  return {
    track(id) {
      if (id === undefined) return { signal: undefined, release: () => {} }
      const controller = new AbortController()
      const set = live.get(id) ?? new Set()
      set.add(controller)
      live.set(id, set)
      return {
        signal: controller.signal,
        release: () => {
          set.delete(controller)
          if (set.size === 0 && live.get(id) === set) live.delete(id)
        },
      }
    },
    cancel(id) {
      const set = live.get(id)
      live.delete(id)
      for (const controller of set ?? []) {
        controller.abort(new BackendError(499, 'cancelled', `request ${id} was cancelled`))
      }
      return set?.size ?? 0
    },
  }
}
