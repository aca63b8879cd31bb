import { afterAll, beforeAll, describe, it } from 'vitest'
import { type BackendService, startBackend } from '../../scripts/local-stack.ts'
import { checks, runCheck } from './checks.ts'

// The protocol conformance suite against our own backend: a real process over HTTP, real
// onnxruntime, the shipped default model.
describe('backend conformance (our backend)', () => {
  let backend: BackendService
  beforeAll(async () => {
    backend = await startBackend()
  })
  afterAll(async () => {
    await backend?.stop()
  })

  for (const check of checks) {
    it(check.name, (ctx) =>
      runCheck(check, { url: backend.url, secret: backend.secret }, (reason) => ctx.skip(reason)),
    )
  }
})
