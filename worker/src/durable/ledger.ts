/**
 * @module durable/ledger
 * Per-tenant strongly consistent state: generation records (so `GET /v1/generations/:id` works after a
 * dropped stream) and Idempotency-Key records. One object per API key id, so one tenant can never read
 * another's ids or keys, and concurrent duplicates are decided by a single-threaded object.
 */
import { DurableObject } from 'cloudflare:workers'
import { lastSeq } from '../events.ts'
import type { GenerationRecord } from '../records.ts'

/** How long generation and idempotency records are kept. */
export const RECORD_TTL_MS = 24 * 60 * 60 * 1000
/**
 * A key still "running" after this long belongs to a job that died with its isolate (every backend
 * call has a timeout, so a live job finishes far sooner); the key is then free again.
 */
export const ABANDONED_MS = 10 * 60 * 1000

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
  | { kind: 'running'; generationId: string }
  | { kind: 'replay'; generationId: string }
  | { kind: 'mismatch'; generationId: string }

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

  /** Merges `patch` into an existing record; returns the new record (undefined if unknown). */
  async patchGeneration(
    id: string,
    patch: Partial<GenerationRecord>,
  ): Promise<GenerationRecord | undefined> {
    const current = await this.ctx.storage.get<GenerationRecord>(`gen:${id}`)
    if (!current) return undefined
    const next = { ...current, ...patch }
    await this.ctx.storage.put(`gen:${id}`, next)
    this.#notify(id)
    return next
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
    if (record?.status !== 'running' || lastSeq(record) > afterSeq) return record
    // Registered synchronously after the read: a write landing in between cannot be missed, since
    // the object's input gate holds other calls while storage is read.
    await new Promise<void>((resolve) => {
      const watchers = this.#watchers.get(id) ?? new Set()
      this.#watchers.set(id, watchers)
      const wake = () => {
        clearTimeout(timer)
        watchers.delete(wake)
        if (watchers.size === 0 && this.#watchers.get(id) === watchers) this.#watchers.delete(id)
        resolve()
      }
      const timer = setTimeout(wake, Math.min(Math.max(0, timeoutMs), WATCH_MAX_MS))
      watchers.add(wake)
    })
    return this.getGeneration(id)
  }

  async getGeneration(id: string): Promise<GenerationRecord | undefined> {
    const record = await this.ctx.storage.get<GenerationRecord>(`gen:${id}`)
    if (!record || Date.parse(record.createdAt) + RECORD_TTL_MS < Date.now()) return undefined
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
    const abandoned = stored?.state === 'running' && now - stored.startedAt > ABANDONED_MS
    const existing = stored && stored.expiresAt > now && !abandoned ? stored : undefined
    if (existing) {
      if (existing.fingerprint !== fingerprint) {
        return { kind: 'mismatch', generationId: existing.generationId }
      }
      return existing.state === 'running'
        ? { kind: 'running', generationId: existing.generationId }
        : { kind: 'replay', generationId: existing.generationId }
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
