/**
 * @module durable/ledger
 * Per-tenant strongly consistent state: generation records (so `GET /v1/generations/:id` works after a
 * dropped stream) and Idempotency-Key records. One object per API key id, so one tenant can never read
 * another's ids or keys, and concurrent duplicates are decided by a single-threaded object.
 */
import { DurableObject } from 'cloudflare:workers'
import { lastSeq } from '../events.ts'
import {
  ABANDONED_CODE,
  abandonedRecord,
  isAbandoned,
  isLive,
  LEASE_MS,
  leaseEnd,
  retryAfterSeconds,
} from '../lease.ts'
import { canceledRecord, type GenerationRecord, isTransientFailure } from '../records.ts'

/** How long generation and idempotency records are kept. */
export const RECORD_TTL_MS = 24 * 60 * 60 * 1000

interface IdempotencyEntry {
  fingerprint: string
  generationId: string
  state: 'running' | 'done'
  startedAt: number
  expiresAt: number
}

/** The longest one `watchGeneration` call waits (callers loop; keeps each RPC short-lived). */
export const WATCH_MAX_MS = 30_000

/** What `beginIdempotent` decided. */
export type IdempotencyDecision =
  | { kind: 'new' }
  | { kind: 'running'; generationId: string; retryAfter: number }
  | { kind: 'replay'; generationId: string }
  | { kind: 'mismatch'; generationId: string }

/** What `cancelGeneration` decided. */
export type CancelDecision =
  | { kind: 'canceled'; record: GenerationRecord }
  | { kind: 'finished'; record: GenerationRecord }
  | { kind: 'not_found' }

export class Ledger extends DurableObject {
  /** Wake-ups of `watchGeneration` calls, per generation id (in memory: this object is the only writer). */
  readonly #watchers = new Map<string, Set<() => void>>()

  #notify(id: string): void {
    const watchers = this.#watchers.get(id)
    if (!watchers) return
    this.#watchers.delete(id)
    for (const wake of watchers) wake()
  }

  /** Stores (or replaces) a generation record. */
  async putGeneration(record: GenerationRecord): Promise<void> {
    await this.ctx.storage.put(`gen:${record.id}`, record)
    this.#notify(record.id)
    await this.scheduleCleanup()
  }

  /** Forgets a record (a cache hit's record written before its request was refused for quota). */
  async deleteGeneration(id: string): Promise<void> {
    await this.ctx.storage.delete(`gen:${id}`)
    this.#notify(id)
  }

  /** Extends a running record's lease to `until` (its job is alive); finished records stay as they are. */
  async renewLease(id: string, until: number): Promise<void> {
    const current = await this.ctx.storage.get<GenerationRecord>(`gen:${id}`)
    if (!current || !isLive(current)) return
    await this.ctx.storage.put(`gen:${id}`, { ...current, leaseUntil: until })
  }

  /**
   * Merges `patch` into a running record; returns the new record (undefined if unknown). A finished
   * record (a canceled one whose job has not stopped yet) is returned unchanged.
   */
  async patchGeneration(
    id: string,
    patch: Partial<GenerationRecord>,
  ): Promise<GenerationRecord | undefined> {
    const current = await this.ctx.storage.get<GenerationRecord>(`gen:${id}`)
    if (!current || !isLive(current)) return current
    const next = { ...current, ...patch }
    await this.ctx.storage.put(`gen:${id}`, next)
    this.#notify(id)
    return next
  }

  /**
   * Stores a job's final record and settles its Idempotency-Key in one call (the response waits for
   * one round trip). A cancel decided meanwhile wins: the stored `canceled` record keeps its time and
   * images and takes the job's steps and timings, whatever the job's outcome. Returns what is stored.
   * A transient failure releases the key so the client's retry runs again; anything else keeps it.
   */
  async finishGeneration(
    next: GenerationRecord,
    idempotencyKey?: string,
  ): Promise<GenerationRecord> {
    const current = await this.ctx.storage.get<GenerationRecord>(`gen:${next.id}`)
    const final: GenerationRecord =
      current?.status === 'canceled'
        ? {
            ...canceledRecord(next, Date.parse(current.completedAt ?? '') || Date.now()),
            images: current.images,
          }
        : next
    await this.ctx.storage.put(`gen:${next.id}`, final)
    this.#notify(next.id)
    if (idempotencyKey !== undefined) {
      await this.finishIdempotent(idempotencyKey, isTransientFailure(final) ? 'release' : 'keep')
    }
    await this.scheduleCleanup()
    return final
  }

  /**
   * Cancels a running generation: its record becomes `canceled` at once (GET, SSE followers and the
   * job's {@link waitForCancel} see it), and the job stops at its next NFE boundary. A finished one is
   * reported as it is; an unknown (or expired) one as not found.
   */
  async cancelGeneration(id: string): Promise<CancelDecision> {
    const record = await this.getGeneration(id)
    if (!record) return { kind: 'not_found' }
    if (!isLive(record)) return { kind: 'finished', record }
    const canceled = canceledRecord(record)
    await this.ctx.storage.put(`gen:${id}`, canceled)
    this.#notify(id)
    return { kind: 'canceled', record: canceled }
  }

  /**
   * Resolves true as soon as the generation is canceled, false once it finished otherwise or after
   * `timeoutMs` (at most {@link WATCH_MAX_MS}; the job calls again while it runs). This is how a job
   * learns of a cancel that landed on another isolate without polling.
   */
  async waitForCancel(id: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + Math.min(Math.max(0, timeoutMs), WATCH_MAX_MS)
    for (;;) {
      const record = await this.ctx.storage.get<GenerationRecord>(`gen:${id}`)
      if (record?.status === 'canceled') return true
      if (record && !isLive(record)) return false
      const left = deadline - Date.now()
      if (left <= 0) return false
      await this.#nextWrite(id, left)
    }
  }

  /**
   * Resolves at the next write to `id`'s record or after `ms`. Callers register right after reading
   * storage: a write landing in between cannot be missed, since the object's input gate holds other
   * calls while storage is read.
   */
  #nextWrite(id: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const watchers = this.#watchers.get(id) ?? new Set()
      this.#watchers.set(id, watchers)
      const wake = () => {
        clearTimeout(timer)
        watchers.delete(wake)
        if (watchers.size === 0 && this.#watchers.get(id) === watchers) this.#watchers.delete(id)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      watchers.add(wake)
    })
  }

  /**
   * The record as soon as it has an event after `afterSeq` or is finished, waiting at most `timeoutMs`
   * for a write (then returns it unchanged); undefined if unknown. A resumed SSE stream follows a
   * generation that another request (another isolate) runs with this, instead of polling.
   */
  async watchGeneration(
    id: string,
    afterSeq: number,
    timeoutMs: number,
  ): Promise<GenerationRecord | undefined> {
    const record = await this.getGeneration(id)
    if (!record || !isLive(record) || lastSeq(record) > afterSeq) return record
    // Woken at the lease's end at the latest, so a follower learns of a dead job at once.
    const untilLeaseEnd = leaseEnd(record) - Date.now() + 50
    await this.#nextWrite(
      id,
      Math.min(Math.max(0, timeoutMs), WATCH_MAX_MS, Math.max(0, untilLeaseEnd)),
    )
    return this.getGeneration(id)
  }

  /** The record, or undefined once expired; a running record whose job died becomes its failure. */
  async getGeneration(id: string): Promise<GenerationRecord | undefined> {
    const record = await this.ctx.storage.get<GenerationRecord>(`gen:${id}`)
    if (!record || Date.parse(record.createdAt) + RECORD_TTL_MS < Date.now()) return undefined
    if (isAbandoned(record)) {
      const failed = abandonedRecord(record)
      await this.ctx.storage.put(`gen:${id}`, failed)
      this.#notify(id)
      return failed
    }
    return record
  }

  /**
   * Claims `key` for a new generation, or reports the earlier request's state (IETF
   * draft-ietf-httpapi-idempotency-key-header: replay / 409 while running / 422 on a different body).
   */
  async beginIdempotent(
    key: string,
    fingerprint: string,
    generationId: string,
  ): Promise<IdempotencyDecision> {
    const now = Date.now()
    const stored = await this.ctx.storage.get<IdempotencyEntry>(`idem:${key}`)
    const existing = stored && stored.expiresAt > now ? stored : undefined
    if (existing?.state === 'done') {
      return existing.fingerprint === fingerprint
        ? { kind: 'replay', generationId: existing.generationId }
        : { kind: 'mismatch', generationId: existing.generationId }
    }
    if (existing?.state === 'running') {
      // Held by a live job unless its generation was abandoned (or never stored, long ago).
      const record = await this.getGeneration(existing.generationId)
      const dead = record
        ? record.error?.code === ABANDONED_CODE
        : now - existing.startedAt > LEASE_MS
      if (!dead) {
        return existing.fingerprint === fingerprint
          ? {
              kind: 'running',
              generationId: existing.generationId,
              retryAfter: retryAfterSeconds(record, now),
            }
          : { kind: 'mismatch', generationId: existing.generationId }
      }
    }
    const entry: IdempotencyEntry = {
      fingerprint,
      generationId,
      state: 'running',
      startedAt: now,
      expiresAt: now + RECORD_TTL_MS,
    }
    await this.ctx.storage.put(`idem:${key}`, entry)
    await this.scheduleCleanup()
    return { kind: 'new' }
  }

  /**
   * Ends the idempotent request: `keep` stores the outcome for replay; `release` forgets the key so a
   * retry runs again (used when the failure was transient, e.g. no backend was reachable).
   */
  async finishIdempotent(key: string, outcome: 'keep' | 'release'): Promise<void> {
    if (outcome === 'release') {
      await this.ctx.storage.delete(`idem:${key}`)
      return
    }
    const entry = await this.ctx.storage.get<IdempotencyEntry>(`idem:${key}`)
    if (entry) await this.ctx.storage.put(`idem:${key}`, { ...entry, state: 'done' })
  }

  private async scheduleCleanup(): Promise<void> {
    if ((await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + RECORD_TTL_MS)
    }
  }

  /** Deletes expired records once a day. */
  override async alarm(): Promise<void> {
    const now = Date.now()
    const expired: string[] = []
    for (const [key, value] of await this.ctx.storage.list<{
      expiresAt?: number
      createdAt?: string
    }>()) {
      const expiresAt = value.expiresAt ?? Date.parse(value.createdAt ?? '') + RECORD_TTL_MS
      if (!(expiresAt > now)) expired.push(key)
    }
    for (let i = 0; i < expired.length; i += 128) {
      await this.ctx.storage.delete(expired.slice(i, i + 128))
    }
    if ((await this.ctx.storage.list({ limit: 1 })).size > 0) {
      await this.ctx.storage.setAlarm(now + RECORD_TTL_MS)
    }
  }
}
