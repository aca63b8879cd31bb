import { env, runInDurableObject } from 'cloudflare:test'
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

  it('an Idempotency-Key replay costs no quota: a retry in an exhausted window gets its result', async () => {
    const key = await createKey({ rateLimit: { limit: 1, windowSeconds: 60 } })
    const headers = { 'Idempotency-Key': crypto.randomUUID() }
    const first = await generate({ prompt: 'pear', count: 1 }, { key, headers })
    expect(first.status).toBe(200)
    const firstJson = (await first.json()) as { id: string }
    // The window is now spent: new work is refused …
    const fresh = await generate({ prompt: 'plum', count: 1 }, { key })
    expect(fresh.status).toBe(429)
    // … but the retry of the first request is a replay, not new work.
    const replay = await generate({ prompt: 'pear', count: 1 }, { key, headers })
    expect(replay.status).toBe(200)
    expect(replay.headers.get('Idempotent-Replayed')).toBe('true')
    expect(((await replay.json()) as { id: string }).id).toBe(firstJson.id)
  })

  it('a cache hit refused for quota answers 429 and leaves no record behind', async () => {
    const key = await createKey({ rateLimit: { limit: 1, windowSeconds: 60 } })
    const body = { prompt: 'quince', seed: 31, count: 1 }
    const first = await generate(body, { key })
    expect(first.status).toBe(200)
    const { id } = (await first.json()) as { id: string }
    // The repeat is a cache hit, whose record is written while the quota is decided …
    const refused = await generate(body, { key })
    expect(refused.status).toBe(429)
    expect(((await refused.json()) as ErrorJson).error.code).toBe('rate_limited')
    // … and deleted again once the quota refuses (in waitUntil: poll briefly).
    const keyId = key.split('_')[1]!
    const ledger = env.LEDGER.get(env.LEDGER.idFromName(keyId))
    const records = () =>
      runInDurableObject(ledger, async (_instance, state) => [
        ...(await state.storage.list({ prefix: 'gen:' })).keys(),
      ])
    for (let i = 0; i < 50 && (await records()).length > 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(await records()).toEqual([`gen:${id}`])
  })

  it('a request refused for quota releases its Idempotency-Key', async () => {
    const key = await createKey({ rateLimit: { limit: 1, windowSeconds: 60 } })
    expect((await generate({ prompt: 'fig', count: 1 }, { key })).status).toBe(200)
    const headers = { 'Idempotency-Key': crypto.randomUUID() }
    const refused = await generate({ prompt: 'kiwi', count: 1 }, { key, headers })
    expect(refused.status).toBe(429)
    // Not left "running": a retry with the same key is judged on quota again (429), not 409.
    const again = await generate({ prompt: 'kiwi', count: 1 }, { key, headers })
    expect(again.status).toBe(429)
  })
})
