/**
 * GenerationJob's final writes: the PNGs and the final record are written concurrently, so a failed
 * PNG write must still end as a failed record (not a "succeeded" one pointing at a missing image),
 * and must not leave a cache entry behind. Local R2 cannot be made to fail on demand, so the real
 * bucket is wrapped with a put that rejects; everything else (backend, Ledger, R2 reads) is real.
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { BackendRouter } from '../src/backends.ts'
import { lookupResult } from '../src/cache.ts'
import { settings } from '../src/env.ts'
import { GenerationJob } from '../src/jobs.ts'
import { getModel } from '../src/models.ts'
import { backendAvailable, backendSecret, backendUrl, runningRecord } from './helpers.ts'

describe.skipIf(!backendAvailable())('GenerationJob final writes', () => {
  it('a failed PNG write ends as a failed record and caches nothing', async () => {
    const config = settings(env)
    const model = await getModel(env, config.models, 'piflow-emoji')
    const record = runningRecord(
      `gen_jobtest${Date.now().toString(36)}`,
      { model: model.id, seed: 9_001, guidance: model.manifest.guidance.default },
      { requestId: 'req_jobtest' },
    )
    const { request } = record
    // PNG writes fail; the cache entry's own R2 write would succeed, so only ordering keeps it out.
    const failingBucket = new Proxy(env.IMAGES, {
      get(target, name, receiver) {
        if (name === 'put') {
          return (key: string, ...rest: unknown[]) =>
            key.startsWith('images/')
              ? Promise.reject(new Error('injected R2 failure'))
              : (target.put as (...args: unknown[]) => Promise<unknown>)(key, ...rest)
        }
        const value = Reflect.get(target, name, receiver)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('unit-jobs-r2-failure'))
    const cacheHash = `jobtest-${record.id}`
    const job = new GenerationJob({
      plan: {
        model,
        request,
        tokenIds: model.tokenizer.encode(request.prompt),
        integration: 'edge',
        preview: false,
      },
      record,
      router: new BackendRouter(
        [{ id: 'local', url: backendUrl(), weight: 1 }],
        backendSecret(),
        30_000,
      ),
      bucket: failingBucket,
      ledger,
      cacheHash,
      recordProgress: false,
    })
    const done = await job.done
    expect(done.status).toBe('failed')
    expect(done.error?.code).toBe('generation_failed')
    expect(done.error?.message).toContain('injected R2 failure')
    // The stored record is the failure, which landed after the "succeeded" one written concurrently.
    expect((await ledger.getGeneration(record.id))?.status).toBe('failed')
    // The cache entry waits for its PNGs, so none was written (its write would settle after `done`).
    await job.settled
    expect(await lookupResult(cacheHash, env.IMAGES, () => {})).toBeUndefined()
  })
})
