/**
 * @module quota
 * Exact per-key quotas through the RateLimiter Durable Object, advertised with the IETF
 * RateLimit/RateLimit-Policy headers (draft-ietf-httpapi-ratelimit-headers: `"<policy>";q=;w=` and
 * `"<policy>";r=;t=`) and `Retry-After` on 429. Units = images, so a count-4 request costs 4.
 */
import type { Context } from 'hono'
import { RateLimitedError } from './errors.ts'
import type { AppEnv } from './hono-env.ts'

const POLICY = 'images'

/** Gives units of one {@link consumeQuota} back: all of them, or `units` (a canceled generation's unproduced images). */
export type QuotaRefund = (units?: number) => Promise<void>

/**
 * Takes `cost` units from the caller's quota; sets the headers, throws 429 when exhausted. Returns
 * the refund, for a generation that then fails for the backends' reasons rather than the caller's.
 */
export async function consumeQuota(c: Context<AppEnv>, cost: number): Promise<QuotaRefund> {
  const { principal, settings } = c.var
  const { limit, windowSeconds } = principal.rateLimit ?? settings.rateLimit
  const stub = c.env.RATE_LIMITER.get(c.env.RATE_LIMITER.idFromName(principal.keyId))
  const decision = await stub.consume(cost, limit, windowSeconds)
  const headers = {
    'RateLimit-Policy': `"${POLICY}";q=${limit};w=${windowSeconds}`,
    RateLimit: `"${POLICY}";r=${decision.remaining};t=${decision.resetSeconds}`,
  }
  if (!decision.allowed) throw new RateLimitedError(decision.resetSeconds, headers)
  for (const [name, value] of Object.entries(headers)) c.header(name, value)
  return (units = cost) => stub.refund(Math.min(units, cost), decision.windowStart)
}
