/**
 * @module durable/admission
 * Admission control per model: how many generations may run at once (the backends' reported capacity,
 * capacity.ts) and a bounded FIFO queue of those waiting for a slot. One object per model id, so every
 * isolate sees the same slots and the same order.
 *
 * Slots are leased like generation records (lease.ts): the job holding one renews it every
 * LEASE_RENEW_MS, and a slot whose lease ran out (its worker died) is dropped at the next call or alarm,
 * so a crashed worker never blocks the queue for longer than LEASE_MS.
 */
import { DurableObject } from 'cloudflare:workers'
import { LEASE_MS } from '../lease.ts'

interface Slot {
  id: string
  state: 'running' | 'queued'
  leaseUntil: number
  /** enqueue order (epoch ms, ties by insertion): the queue is FIFO */
  since: number
}

/** What {@link Admission.acquire} decided. */
export type AdmissionDecision =
  | { kind: 'admitted' }
  /** `position`: 1 = next to run */
  | { kind: 'queued'; position: number }
  | { kind: 'full'; retryAfter: number }

/** What {@link Admission.wait} saw. */
export type AdmissionState = { kind: 'admitted' } | { kind: 'queued'; position: number }

/** The longest one `wait` call waits (callers loop; keeps each RPC short-lived). */
export const ADMISSION_WAIT_MAX_MS = 10_000

export class Admission extends DurableObject {
  #slots: Map<string, Slot> | undefined
  #capacity = 1
  /** woken on every change of the slots (in memory: this object is the only writer) */
  readonly #waiters = new Set<() => void>()

  async #load(): Promise<Map<string, Slot>> {
    if (!this.#slots) {
      const stored = (await this.ctx.storage.get<Slot[]>('slots')) ?? []
      this.#slots = new Map(stored.map((slot) => [slot.id, slot]))
      this.#capacity = (await this.ctx.storage.get<number>('capacity')) ?? 1
    }
    return this.#slots
  }

  #queued(slots: Map<string, Slot>): Slot[] {
    return [...slots.values()].filter((s) => s.state === 'queued').sort((a, b) => a.since - b.since)
  }

  /** Drops expired slots and promotes the queue's head while slots are free; true if anything changed. */
  #settle(slots: Map<string, Slot>, now: number): boolean {
    let changed = false
    for (const [id, slot] of slots) {
      if (slot.leaseUntil <= now) {
        slots.delete(id)
        changed = true
      }
    }
    let running = [...slots.values()].filter((s) => s.state === 'running').length
    for (const slot of this.#queued(slots)) {
      if (running >= this.#capacity) break
      slot.state = 'running'
      running++
      changed = true
    }
    return changed
  }

  async #save(slots: Map<string, Slot>): Promise<void> {
    await this.ctx.storage.put('slots', [...slots.values()])
    for (const wake of [...this.#waiters]) wake()
    // Wakes the object at the earliest lease end, so a dead worker's slot is freed without callers.
    const earliest = Math.min(...[...slots.values()].map((s) => s.leaseUntil))
    if (Number.isFinite(earliest)) await this.ctx.storage.setAlarm(earliest + 50)
  }

  /**
   * A slot for generation `id`: running at once while fewer than `capacity` run and nobody waits, else
   * queued (at most `limit` waiting), else full.
   */
  async acquire(id: string, capacity: number, limit: number): Promise<AdmissionDecision> {
    const slots = await this.#load()
    const now = Date.now()
    if (capacity !== this.#capacity) {
      this.#capacity = capacity
      await this.ctx.storage.put('capacity', capacity)
    }
    this.#settle(slots, now)
    const queued = this.#queued(slots)
    const running = slots.size - queued.length
    let decision: AdmissionDecision
    if (running < capacity && queued.length === 0) {
      slots.set(id, { id, state: 'running', leaseUntil: now + LEASE_MS, since: now })
      decision = { kind: 'admitted' }
    } else if (queued.length < limit) {
      const since = Math.max(now, (queued.at(-1)?.since ?? 0) + 1e-3)
      slots.set(id, { id, state: 'queued', leaseUntil: now + LEASE_MS, since })
      decision = { kind: 'queued', position: queued.length + 1 }
    } else {
      // Roughly one generation's time per capacity's worth of waiters ahead; at least a second.
      return { kind: 'full', retryAfter: Math.max(1, Math.ceil(queued.length / capacity)) }
    }
    await this.#save(slots)
    return decision
  }

  /**
   * Waits until `id` is admitted or its queue position differs from `position`, at most `timeoutMs`
   * (≤ {@link ADMISSION_WAIT_MAX_MS}); a slot that is gone (its lease ran out) counts as admitted, since
   * its caller is evidently alive and the slot only bounds concurrency.
   */
  async wait(id: string, position: number, timeoutMs: number): Promise<AdmissionState> {
    const deadline = Date.now() + Math.min(Math.max(0, timeoutMs), ADMISSION_WAIT_MAX_MS)
    for (;;) {
      const slots = await this.#load()
      if (this.#settle(slots, Date.now())) await this.#save(slots)
      const slot = slots.get(id)
      if (!slot || slot.state === 'running') return { kind: 'admitted' }
      const now = this.#queued(slots).indexOf(slot) + 1
      const left = deadline - Date.now()
      if (now !== position || left <= 0) return { kind: 'queued', position: now }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer)
          this.#waiters.delete(wake)
          resolve()
        }
        const timer = setTimeout(wake, left)
        this.#waiters.add(wake)
      })
    }
  }

  /** Extends `id`'s slot lease (its job is alive). */
  async renew(id: string, until: number): Promise<void> {
    const slots = await this.#load()
    const slot = slots.get(id)
    if (!slot) return
    slot.leaseUntil = until
    await this.ctx.storage.put('slots', [...slots.values()])
  }

  /** Frees `id`'s slot (its generation ended, or was canceled while queued); the next one runs. */
  async release(id: string): Promise<void> {
    const slots = await this.#load()
    if (!slots.delete(id)) return
    this.#settle(slots, Date.now())
    await this.#save(slots)
  }

  override async alarm(): Promise<void> {
    const slots = await this.#load()
    if (this.#settle(slots, Date.now())) await this.#save(slots)
    else {
      const earliest = Math.min(...[...slots.values()].map((s) => s.leaseUntil))
      if (Number.isFinite(earliest)) await this.ctx.storage.setAlarm(earliest + 50)
    }
  }
}
