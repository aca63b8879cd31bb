/**
 * @module capacity
 * How many generations the backends can take at once, from what they report (`GET /readyz`:
 * `batching.maxBatchSize` rows run together plus `batching.queueLimit` waiting, backend/PROTOCOL.md).
 * A generation has at most one forward in flight, so past that sum the backends would shed forwards
 * with 503 `queue_full`; the worker queues generations instead (durable/admission.ts). Probed once per
 * {@link CAPACITY_CACHE_MS} per isolate; undefined when no backend answers (then nothing is queued and
 * the router reports the backends' failure as before).
 */
import type { Settings } from './env.ts'

export const CAPACITY_CACHE_MS = 5000
const PROBE_TIMEOUT_MS = 2000

let last: { settings: Settings; at: number; capacity: Promise<number | undefined> } | undefined

async function probe(url: string, secret: string): Promise<number> {
  try {
    const response = await fetch(`${url}/readyz`, {
      headers: { 'X-Piflow-Backend-Secret': secret },
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    })
    if (!response.ok) {
      await response.body?.cancel()
      return 0
    }
    const body = (await response.json()) as {
      batching?: { maxBatchSize?: unknown; queueLimit?: unknown }
    }
    const { maxBatchSize, queueLimit } = body.batching ?? {}
    // A backend that does not report its bounds is not bounded here (it sheds load itself).
    if (!Number.isInteger(maxBatchSize) || !Number.isInteger(queueLimit)) return Infinity
    return Math.max(1, (maxBatchSize as number) + (queueLimit as number))
  } catch {
    return 0
  }
}

/** Concurrent generations the ready backends can hold; undefined when none is ready or one is unbounded. */
export function backendCapacity(settings: Settings): Promise<number | undefined> {
  const now = Date.now()
  if (last?.settings === settings && now - last.at < CAPACITY_CACHE_MS) return last.capacity
  const capacity = Promise.all(
    settings.backends.map((b) => probe(b.url, settings.backendSecret)),
  ).then((each) => {
    const total = each.reduce((sum, n) => sum + n, 0)
    return total > 0 && Number.isFinite(total) ? total : undefined
  })
  last = { settings, at: now, capacity }
  return capacity
}
