import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { backendAvailable, createKey, type ErrorJson, generate } from './helpers.ts'

describe('RateLimiter durable object', () => {
  it('is exact under concurrency and denied requests spend nothing', async () => {
    const limiter = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName('unit-exact'))
    const decisions = await Promise.all(
      Array.from({ length: 25 }, () => limiter.consume(1, 10, 60)),
    )
    expect(decisions.filter((d) => d.allowed)).toHaveLength(10)
    const last = await limiter.consume(1, 10, 60)
    expect(last).toMatchObject({ allowed: false, limit: 10, remaining: 0, windowSeconds: 60 })
    expect(last.resetSeconds).toBeGreaterThan(0)
    expect(last.resetSeconds).toBeLessThanOrEqual(60)
  })

  it('weights by cost', async () => {
    const limiter = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName('unit-cost'))
    expect((await limiter.consume(3, 4, 60)).remaining).toBe(1)
    expect((await limiter.consume(2, 4, 60)).allowed).toBe(false)
    expect((await limiter.consume(1, 4, 60)).allowed).toBe(true)
  })
})

describe.skipIf(!backendAvailable())('rate limiting over HTTP', () => {
  it('counts images per key, 429 with Retry-After and RateLimit headers; invalid requests are free', async () => {
    const key = await createKey({ rateLimit: { limit: 3, windowSeconds: 60 } })
    // A 422 costs nothing.
    expect((await generate({ prompt: 'apple', count: 9 }, { key })).status).toBe(422)
    const ok = await generate({ prompt: 'apple', seed: 1, count: 2 }, { key })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('RateLimit-Policy')).toBe('"images";q=3;w=60')
    expect(ok.headers.get('RateLimit')).toMatch(/^"images";r=1;t=\d+$/)
    const limited = await generate({ prompt: 'apple', seed: 2, count: 2 }, { key })
    expect(limited.status).toBe(429)
    expect(Number(limited.headers.get('Retry-After'))).toBeGreaterThan(0)
    expect(limited.headers.get('RateLimit')).toMatch(/^"images";r=1;t=\d+$/)
    expect(((await limited.json()) as ErrorJson).error.code).toBe('rate_limited')
    // Another key has its own quota.
    expect(
      (await generate({ prompt: 'apple', seed: 2, count: 2 }, { key: await createKey() })).status,
    ).toBe(200)
  })
})
