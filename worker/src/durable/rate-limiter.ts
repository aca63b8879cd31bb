/**
 * @module durable/rate-limiter
 * Exact per-key quotas: one Durable Object per API key id, a fixed window of `limit` units per
 * `windowSeconds`. A single object per key serialises every decision, so counts are exact across
 * locations (the Workers Rate Limiting binding is per-location and approximate).
 */
import { DurableObject } from 'cloudflare:workers'

/** The outcome of one `consume` call; enough to render RateLimit/RateLimit-Policy/Retry-After. */
export interface RateLimitDecision {
  allowed: boolean
  limit: number
  remaining: number
  /** seconds until the window resets */
  resetSeconds: number
  windowSeconds: number
  /** start of the window the units were taken from (what `refund` gives them back to) */
  windowStart: number
}

interface WindowState {
  start: number
  used: number
}

export class RateLimiter extends DurableObject {
  private window: WindowState | undefined

  /** Takes `cost` units if they fit in the current window; denied requests take nothing. */
  async consume(cost: number, limit: number, windowSeconds: number): Promise<RateLimitDecision> {
    const now = Date.now()
    const windowMs = windowSeconds * 1000
    this.window ??= (await this.ctx.storage.get<WindowState>('window')) ?? { start: now, used: 0 }
    if (now - this.window.start >= windowMs) this.window = { start: now, used: 0 }
    const allowed = this.window.used + cost <= limit
    if (allowed) {
      this.window.used += cost
      // Persisted so an evicted object does not forget what was spent. Not waiting for the write to
      // be confirmed keeps the storage flush off every request's latency; the cost is that a crash
      // in that instant may forget the last few units, which a quota can afford.
      await this.ctx.storage.put('window', this.window, { allowUnconfirmed: true })
    }
    return {
      allowed,
      limit,
      remaining: Math.max(0, limit - this.window.used),
      resetSeconds: Math.max(1, Math.ceil((this.window.start + windowMs - now) / 1000)),
      windowSeconds,
      windowStart: this.window.start,
    }
  }

  /**
   * Gives back `cost` units taken from the window that started at `windowStart` (a generation that
   * failed for backend reasons); units of a window that has since ended are gone anyway.
   */
  async refund(cost: number, windowStart: number): Promise<void> {
    this.window ??= await this.ctx.storage.get<WindowState>('window')
    if (!this.window || this.window.start !== windowStart) return
    this.window.used = Math.max(0, this.window.used - cost)
    await this.ctx.storage.put('window', this.window, { allowUnconfirmed: true })
  }
}
