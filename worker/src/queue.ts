/**
 * @module queue
 * Entering a model's admission queue (durable/admission.ts) for a new generation: it runs at once
 * while the backends' reported capacity (capacity.ts) has room, else waits in a FIFO of at most
 * PIFLOW_QUEUE_LIMIT generations (status `queued`, with its position), else is shed with 503
 * `queue_full` + Retry-After. With no capacity reported (no backend ready, or one that reports no
 * bounds) nothing is queued and the request runs as before.
 */
import type { Context } from 'hono'
import { backendCapacity } from './capacity.ts'
import { BackendError } from './errors.ts'
import type { AppEnv } from './hono-env.ts'
import type { JobOptions } from './jobs.ts'

/** Takes (or queues for) generation `id`'s slot on `modelId`; undefined when admission is off. */
export async function enterQueue(
  c: Context<AppEnv>,
  modelId: string,
  id: string,
): Promise<JobOptions['admission']> {
  const { settings } = c.var
  const capacity = await backendCapacity(settings)
  if (capacity === undefined) return undefined
  const slots = c.env.ADMISSION.get(c.env.ADMISSION.idFromName(modelId))
  const decision = await slots.acquire(id, capacity, settings.queueLimit)
  if (decision.kind === 'full') {
    throw new BackendError(
      503,
      'queue_full',
      `Every backend slot for "${modelId}" is taken and ${settings.queueLimit} generations are waiting; retry later`,
      { retryAfter: decision.retryAfter },
    )
  }
  return decision.kind === 'queued' ? { slots, position: decision.position } : { slots }
}
