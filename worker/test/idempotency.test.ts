import { env, runInDurableObject } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { ABANDONED_MS, RECORD_TTL_MS } from '../src/durable/ledger.ts'
import { backendAvailable, backendRequests, type ErrorJson, generate } from './helpers.ts'

describe('Ledger idempotency records', () => {
  it('claims, conflicts, mismatches, replays and releases', async () => {
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('unit-ledger'))
    expect(await ledger.beginIdempotent('k1', 'fp-a', 'gen_1')).toEqual({ kind: 'new' })
    expect(await ledger.beginIdempotent('k1', 'fp-a', 'gen_2')).toEqual({
      kind: 'running',
      generationId: 'gen_1',
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

  it('a key left running by a dead job is free again after the abandonment window', async () => {
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('unit-ledger-abandoned'))
    await runInDurableObject(ledger, async (_instance, state) => {
      const startedAt = Date.now() - ABANDONED_MS - 1
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
