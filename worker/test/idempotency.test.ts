import { env, runInDurableObject } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { RECORD_TTL_MS } from '../src/durable/ledger.ts'
import { LEASE_MS, LEASE_RENEW_MS } from '../src/lease.ts'
import {
  backendAvailable,
  backendRequests,
  type ErrorJson,
  generate,
  runningRecord,
} from './helpers.ts'

describe('Ledger idempotency records', () => {
  it('claims, conflicts, mismatches, replays and releases', async () => {
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('unit-ledger'))
    expect(await ledger.beginIdempotent('k1', 'fp-a', 'gen_1')).toEqual({ kind: 'new' })
    expect(await ledger.beginIdempotent('k1', 'fp-a', 'gen_2')).toEqual({
      kind: 'running',
      generationId: 'gen_1',
      retryAfter: 1,
    })
    expect(await ledger.beginIdempotent('k1', 'fp-b', 'gen_3')).toEqual({
      kind: 'mismatch',
      generationId: 'gen_1',
    })
    await ledger.finishIdempotent('k1', 'keep')
    expect(await ledger.beginIdempotent('k1', 'fp-a', 'gen_4')).toEqual({
      kind: 'replay',
      generationId: 'gen_1',
    })
    await ledger.finishIdempotent('k1', 'release')
    expect(await ledger.beginIdempotent('k1', 'fp-a', 'gen_5')).toEqual({ kind: 'new' })
  })

  it('a key whose job died before storing its record is free again after one lease', async () => {
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('unit-ledger-abandoned'))
    await runInDurableObject(ledger, async (_instance, state) => {
      const startedAt = Date.now() - LEASE_MS - 1
      await state.storage.put('idem:stale', {
        fingerprint: 'fp',
        generationId: 'gen_dead',
        state: 'running',
        startedAt,
        expiresAt: startedAt + RECORD_TTL_MS,
      })
    })
    expect(await ledger.beginIdempotent('stale', 'fp', 'gen_new')).toEqual({ kind: 'new' })
  })

  it('a running record whose lease ran out fails as abandoned, and frees its key', async () => {
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('unit-ledger-lease'))
    const now = Date.now()
    const running = (id: string, leaseUntil: number) =>
      runningRecord(
        id,
        { prompt: 'apple' },
        { createdAt: new Date(now - 2 * LEASE_MS).toISOString(), leaseUntil },
      )
    // Renewed just now: alive, retry soon.
    await ledger.putGeneration(running('gen_live', now + LEASE_MS))
    expect(await ledger.beginIdempotent('live', 'fp', 'gen_live')).toEqual({ kind: 'new' })
    expect(await ledger.beginIdempotent('live', 'fp', 'gen_other')).toEqual({
      kind: 'running',
      generationId: 'gen_live',
      retryAfter: 1,
    })
    // Last renewed 12 s ago (overdue): the rest of the lease, after which the key is free.
    await ledger.putGeneration(running('gen_quiet', now + LEASE_MS - 12_000))
    expect(await ledger.beginIdempotent('quiet', 'fp', 'gen_quiet')).toEqual({ kind: 'new' })
    const quiet = await ledger.beginIdempotent('quiet', 'fp', 'gen_other')
    expect(quiet).toMatchObject({ kind: 'running', generationId: 'gen_quiet' })
    expect((quiet as { retryAfter: number }).retryAfter).toBe((LEASE_MS - 12_000) / 1000)
    expect(12_000).toBeGreaterThan(LEASE_RENEW_MS)
    // Lease over: the record reads as failed, and the key runs again.
    await ledger.putGeneration(running('gen_dead', now - 1))
    expect(await ledger.beginIdempotent('dead', 'fp', 'gen_dead')).toEqual({ kind: 'new' })
    const dead = await ledger.getGeneration('gen_dead')
    expect(dead).toMatchObject({ status: 'failed', error: { code: 'generation_abandoned' } })
    expect(await ledger.beginIdempotent('dead', 'fp', 'gen_retry')).toEqual({ kind: 'new' })
    // A renewal after the end changes nothing; a live renewal extends the lease.
    await ledger.renewLease('gen_dead', Date.now() + LEASE_MS)
    expect((await ledger.getGeneration('gen_dead'))?.status).toBe('failed')
    await ledger.renewLease('gen_live', now + 2 * LEASE_MS)
    expect((await ledger.getGeneration('gen_live'))?.leaseUntil).toBe(now + 2 * LEASE_MS)
  })

  it('concurrent claims of one key: exactly one wins', async () => {
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('unit-ledger-race'))
    const decisions = await Promise.all(
      Array.from({ length: 10 }, (_, i) => ledger.beginIdempotent('race', 'fp', `gen_${i}`)),
    )
    expect(decisions.filter((d) => d.kind === 'new')).toHaveLength(1)
    expect(decisions.filter((d) => d.kind === 'running')).toHaveLength(9)
  })
})

describe.skipIf(!backendAvailable())('Idempotency-Key over HTTP', () => {
  it('replays the stored result without running again', async () => {
    const headers = { 'Idempotency-Key': `"${crypto.randomUUID()}"` }
    const body = { prompt: 'green apple', count: 1 }
    const first = await generate(body, { headers })
    expect(first.status).toBe(200)
    const firstJson = (await first.json()) as { id: string; seed: number }
    const before = await backendRequests()
    const second = await generate(body, { headers })
    expect(second.status).toBe(200)
    expect(second.headers.get('Idempotent-Replayed')).toBe('true')
    const secondJson = (await second.json()) as { id: string; seed: number }
    // Unseeded, so only a replay can return the same random seed and id.
    expect(secondJson).toEqual(firstJson)
    expect(await backendRequests()).toBe(before)
  })

  it('409 while the first request runs, 422 for a different body', async () => {
    const headers = { 'Idempotency-Key': crypto.randomUUID(), Accept: 'text/event-stream' }
    const running = await generate({ prompt: 'lemon', seed: 1234 }, { headers })
    // Read the first event: once the id arrived, the key is claimed and the job is running.
    const reader = running.body!.getReader()
    const { value } = await reader.read()
    expect(new TextDecoder().decode(value)).toContain('event: id')
    const conflict = await generate({ prompt: 'lemon', seed: 1234 }, { headers })
    expect(conflict.status).toBe(409)
    expect(((await conflict.json()) as ErrorJson).error.code).toBe('idempotency_in_progress')
    const mismatch = await generate({ prompt: 'lime', seed: 1234 }, { headers })
    expect(mismatch.status).toBe(422)
    expect(((await mismatch.json()) as ErrorJson).error.code).toBe('idempotency_key_reused')
    while (!(await reader.read()).done) {
      // drain
    }
  })
})
