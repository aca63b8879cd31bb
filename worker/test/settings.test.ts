/**
 * Secrets the worker refuses to run without: a deploy that forgot them (e.g. `wrangler deploy` without
 * `--env production`, which keeps the top-level `PIFLOW_ENV = "local"`) must fail its health check, not
 * sign image URLs with a secret anyone can derive.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { callWithVars, type ErrorJson, settleCalls } from './helpers.ts'

afterEach(settleCalls)

describe('PIFLOW_SIGNING_SECRET', () => {
  it('missing, in local mode too: 500 server_misconfigured on every route', async () => {
    for (const PIFLOW_ENV of ['local', 'production']) {
      for (const path of ['/healthz', '/v1/models']) {
        const res = await callWithVars(
          {
            PIFLOW_ENV,
            PIFLOW_PUBLIC_ORIGIN: 'https://api.piflow.example',
            // unsets the secret the test config provides
            PIFLOW_SIGNING_SECRET: undefined,
          },
          path,
        )
        expect(res.status).toBe(500)
        const body = (await res.json()) as ErrorJson
        expect(body.error.code).toBe('server_misconfigured')
        expect(body.error.message).toMatch(/PIFLOW_SIGNING_SECRET/)
      }
    }
  })
})

describe('PIFLOW_MODELS', () => {
  it('missing or empty: 500 server_misconfigured (it names the default model; no fallback names another)', async () => {
    for (const PIFLOW_MODELS of [undefined, ' , ']) {
      const res = await callWithVars({ PIFLOW_MODELS }, '/v1/models')
      expect(res.status).toBe(500)
      const body = (await res.json()) as ErrorJson
      expect(body.error.code).toBe('server_misconfigured')
      expect(body.error.message).toMatch(/PIFLOW_MODELS/)
    }
  })
})
