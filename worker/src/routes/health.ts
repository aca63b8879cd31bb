/**
 * @module routes/health
 * `/healthz`: liveness of the worker alone (no I/O). `/readyz`: whether any backend is ready; 200
 * while at least one is, 503 otherwise. Both are public and unmetered, as load balancers call them
 * without credentials; so `/readyz` answers from one probe round per {@link READY_CACHE_MS} per
 * isolate (concurrent calls share the round in flight), and a flood of them never reaches the backends.
 */
import { Hono } from 'hono'
import { BackendRouter } from '../backends.ts'
import type { Settings } from '../env.ts'
import type { AppEnv } from '../hono-env.ts'

export const health = new Hono<AppEnv>()

/** How long one probe round answers `/readyz` for. */
export const READY_CACHE_MS = 5000

type BackendStates = Awaited<ReturnType<BackendRouter['check']>>
let lastRound: { settings: Settings; at: number; states: Promise<BackendStates> } | undefined

/** The backends' states from a probe round at most READY_CACHE_MS old (this isolate's settings). */
function backendStates(settings: Settings): Promise<BackendStates> {
  const now = Date.now()
  if (lastRound?.settings === settings && now - lastRound.at < READY_CACHE_MS) {
    return lastRound.states
  }
  const { backends, backendSecret, backendTimeoutMs } = settings
  // Not tied to one caller's signal: the round is shared, a caller hanging up must not cancel it.
  const states = new BackendRouter(backends, backendSecret, backendTimeoutMs).check()
  lastRound = { settings, at: now, states }
  states.catch(() => {
    if (lastRound?.states === states) lastRound = undefined
  })
  return states
}

health.get('/healthz', (c) => c.json({ status: 'ok' as const }))

health.get('/readyz', async (c) => {
  const states = await backendStates(c.var.settings)
  const ready = states.some((s) => s.healthy)
  return c.json(
    { status: ready ? ('ok' as const) : ('degraded' as const), backends: states },
    ready ? 200 : 503,
  )
})
