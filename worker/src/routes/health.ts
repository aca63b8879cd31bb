/**
 * @module routes/health
 * `/healthz`: liveness of the worker alone (no I/O). `/readyz`: probes every backend's `/readyz`;
 * 200 while at least one backend is ready, 503 otherwise.
 */
import { Hono } from 'hono'
import { BackendRouter } from '../backends.ts'
import type { AppEnv } from '../hono-env.ts'

export const health = new Hono<AppEnv>()

health.get('/healthz', (c) => c.json({ status: 'ok' as const }))

health.get('/readyz', async (c) => {
  const { backends, backendSecret, backendTimeoutMs } = c.var.settings
  const router = new BackendRouter(backends, backendSecret, backendTimeoutMs)
  const states = await router.check(c.req.raw.signal)
  const ready = states.some((s) => s.healthy)
  return c.json(
    { status: ready ? ('ok' as const) : ('degraded' as const), backends: states },
    ready ? 200 : 503,
  )
})
