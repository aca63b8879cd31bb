import { SELF } from 'cloudflare:test'
import { encodeSafetensors } from '@piflow/protocol'
import { beforeEach, describe, expect, it } from 'vitest'
import { BackendRouter, FAILURES_TO_OPEN, resetBackendHealth } from '../src/backends.ts'
import { BackendError } from '../src/errors.ts'
import { BASE, backendAvailable, backendSecret, backendUrl } from './helpers.ts'

// Port 9 (discard) is closed here: connections are refused at once.
const DEAD = { id: 'dead', url: 'http://127.0.0.1:9', weight: 1e9 }
const live = () => ({ id: 'live', url: backendUrl(), weight: 1e-9 })

function forwardBody(): Uint8Array {
  return encodeSafetensors({
    x: { dtype: 'F32', shape: [1, 3, 32, 32], data: new Float32Array(3 * 32 * 32) },
    sigma: { dtype: 'F32', shape: [1], data: new Float32Array([1]) },
    tokens: { dtype: 'I64', shape: [1, 16], data: new BigInt64Array(16) },
  })
}

const PATH = '/v1/models/piflow-emoji/forward'

describe.skipIf(!backendAvailable())('backend routing', () => {
  beforeEach(() => resetBackendHealth())

  it('retries a failed forward on another backend, then opens the dead one’s circuit', async () => {
    const router = new BackendRouter([DEAD, live()], backendSecret(), 30_000)
    const first = await router.post(PATH, forwardBody())
    expect(first).toMatchObject({ backendId: 'live', attempts: 2 })
    for (let i = 1; i < FAILURES_TO_OPEN; i++) await router.post(PATH, forwardBody())
    const states = await router.check()
    expect(states.find((s) => s.id === 'dead')).toMatchObject({ healthy: false, circuit: 'open' })
    expect(states.find((s) => s.id === 'live')).toMatchObject({ healthy: true, circuit: 'closed' })
    // With the circuit open the dead backend is skipped, despite its weight.
    expect(await router.post(PATH, forwardBody())).toMatchObject({ backendId: 'live', attempts: 1 })
  })

  it('503 when every circuit is open, 502 when all attempts failed', async () => {
    const router = new BackendRouter([DEAD], backendSecret(), 30_000)
    for (let i = 0; i < FAILURES_TO_OPEN; i++) {
      const error = await router.post(PATH, forwardBody()).catch((e) => e)
      expect(error).toBeInstanceOf(BackendError)
      expect(error).toMatchObject({ status: 502, code: 'backend_failed' })
    }
    const error = await router.post(PATH, forwardBody()).catch((e) => e)
    expect(error).toMatchObject({ status: 503, code: 'backends_unavailable' })
    expect(error.headers['Retry-After']).toBeDefined()
  })

  it('a 4xx answer is not retried elsewhere and does not trip the breaker', async () => {
    const router = new BackendRouter([live(), { ...live(), id: 'live-2' }], backendSecret(), 30_000)
    const error = await router.post(PATH, new Uint8Array([1, 2, 3])).catch((e) => e)
    expect(error).toMatchObject({ status: 502, code: 'backend_rejected' })
    expect(error.message).toContain('malformed_safetensors')
    expect((await router.check()).every((s) => s.circuit === 'closed')).toBe(true)
  })

  it('a wrong secret is rejected by the backend (the worker sends its own, never the caller’s)', async () => {
    const router = new BackendRouter([live()], 'not-the-secret', 30_000)
    const error = await router.post(PATH, forwardBody()).catch((e) => e)
    expect(error.message).toContain('401')
  })

  it('/readyz probes the configured backends', async () => {
    const res = await SELF.fetch(`${BASE}/readyz`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      status: 'ok',
      backends: [{ id: 'test-backend', healthy: true, circuit: 'closed' }],
    })
  })

  it('per-attempt timeouts become 504', async () => {
    const router = new BackendRouter([live()], backendSecret(), 1)
    const error = await router.post(PATH, forwardBody()).catch((e) => e)
    expect(error).toMatchObject({ status: 504, code: 'backend_timeout' })
  })
})
