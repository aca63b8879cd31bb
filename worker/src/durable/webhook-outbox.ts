/**
 * @module durable/webhook-outbox
 * Durable, retried webhook deliveries of one API key's generations (one object per key id). An event is
 * stored before anything is sent, then delivered by the object's alarm: a 2xx answer ends it; anything
 * else (an error status, a redirect — never followed —, a timeout, a target refused at delivery) is
 * retried with exponential backoff ({@link RETRY_DELAYS_MS}) through further alarms, so each event is
 * delivered at least once while its receiver comes back within the schedule, each time under the same
 * `webhook-id`. Undeliverable events are dropped after the last attempt (logged).
 */
import { DurableObject } from 'cloudflare:workers'
import type { Env } from '../env.ts'
import { refuseWebhookTarget, signedHeaders, webhookSecret } from '../webhooks.ts'

/** Waits before each retry (then the event is dropped): about 2 h in all, within alarm limits. */
export const RETRY_DELAYS_MS = [1_000, 5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000]
/** One attempt's deadline (a receiver should answer at once and work afterwards). */
export const DELIVERY_TIMEOUT_MS = 10_000

/** One event to deliver. */
export interface WebhookDelivery {
  /** `webhook-id`: stable per event (`<generation id>.<event>[.<step>]`) */
  id: string
  url: string
  /** the JSON body, exactly as signed */
  body: string
  /** the key whose secret signs it (its id and stored hash; webhooks.ts derives the secret) */
  keyId: string
  keyHash: string
}

interface Pending extends WebhookDelivery {
  attempts: number
  nextAt: number
  /** what the last attempt got (status or error), for the logs */
  last?: string
}

export class WebhookOutbox extends DurableObject<Env> {
  /** Stores `delivery` and has it sent at once (an event already stored keeps its state). */
  async enqueue(delivery: WebhookDelivery): Promise<void> {
    const key = `dlv:${delivery.id}`
    if (await this.ctx.storage.get(key)) return
    await this.ctx.storage.put(key, {
      ...delivery,
      attempts: 0,
      nextAt: Date.now(),
    } satisfies Pending)
    await this.#schedule(Date.now())
  }

  async #schedule(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm()
    if (current === null || current > at) await this.ctx.storage.setAlarm(at)
  }

  /** Sends every due event (concurrently), then sets the alarm for the next one due. */
  override async alarm(): Promise<void> {
    const now = Date.now()
    const pending = await this.ctx.storage.list<Pending>({ prefix: 'dlv:' })
    const due = [...pending.values()].filter((p) => p.nextAt <= now)
    await Promise.all(due.map((p) => this.#attempt(p)))
    const left = await this.ctx.storage.list<Pending>({ prefix: 'dlv:' })
    const next = Math.min(...[...left.values()].map((p) => p.nextAt))
    if (Number.isFinite(next)) await this.ctx.storage.setAlarm(Math.max(next, Date.now()))
  }

  async #attempt(pending: Pending): Promise<void> {
    const key = `dlv:${pending.id}`
    const outcome = await this.#send(pending)
    if (outcome === 'delivered') {
      await this.ctx.storage.delete(key)
      return
    }
    const attempts = pending.attempts + 1
    const delay = RETRY_DELAYS_MS[attempts - 1]
    if (delay === undefined) {
      console.error(
        `webhook ${pending.id} to ${pending.url} dropped after ${attempts} attempts (${outcome})`,
      )
      await this.ctx.storage.delete(key)
      return
    }
    await this.ctx.storage.put(key, {
      ...pending,
      attempts,
      nextAt: Date.now() + delay,
      last: outcome,
    })
  }

  /** One attempt: 'delivered' on a 2xx, else what went wrong. */
  async #send(delivery: Pending): Promise<'delivered' | string> {
    const refused = refuseWebhookTarget(delivery.url, this.env.PIFLOW_ENV === 'local')
    if (refused) return `target refused: ${refused}`
    const secret = await webhookSecret(
      this.env.PIFLOW_SIGNING_SECRET ?? '',
      delivery.keyId,
      delivery.keyHash,
    )
    try {
      const response = await fetch(delivery.url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': 'piflow-webhooks/1',
          ...(await signedHeaders(secret, delivery.id, delivery.body)),
        },
        body: delivery.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      })
      await response.body?.cancel()
      return response.status >= 200 && response.status < 300
        ? 'delivered'
        : `HTTP ${response.status}`
    } catch (error) {
      return (error as Error).message
    }
  }
}
