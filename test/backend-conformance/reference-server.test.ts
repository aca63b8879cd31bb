import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, it } from 'vitest'
import { checks, runCheck } from './checks.ts'
import { type ListeningServer, spawnListening } from './spawn-server.ts'

// The same conformance checks against the independent Python implementation (reference_server.py),
// which proves they test the protocol rather than our server. Needs a Python with onnxruntime, numpy
// and safetensors: PIFLOW_REFERENCE_PYTHON=/path/to/python (default python3).
const python = process.env.PIFLOW_REFERENCE_PYTHON ?? 'python3'
const probe = spawnSync(python, ['-c', 'import onnxruntime, numpy, safetensors'], {
  stdio: 'ignore',
})
const available = probe.status === 0
const root = fileURLToPath(new URL('../../', import.meta.url))

if (!available) {
  describe('backend conformance (Python reference server)', () => {
    it.skip(`skipped: ${python} lacks onnxruntime/numpy/safetensors (set PIFLOW_REFERENCE_PYTHON)`, () => {})
  })
} else {
  describe('backend conformance (Python reference server)', () => {
    const secret = randomBytes(16).toString('hex')
    let server: ListeningServer
    beforeAll(async () => {
      server = await spawnListening(
        python,
        [
          `${root}test/backend-conformance/reference_server.py`,
          '--port',
          '0',
          '--models-dir',
          `${root}models`,
        ],
        { env: { ...process.env, PIFLOW_BACKEND_SECRET: secret } },
      )
    })
    afterAll(() => server?.stop())

    for (const check of checks) {
      it(check.name, (ctx) =>
        runCheck(check, { url: server.url, secret }, (reason) => ctx.skip(reason)),
      )
    }
  })
}
