import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, it } from 'vitest'
import { checks, runCheck } from './checks.ts'

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
    let child: ChildProcess
    let url: string
    beforeAll(async () => {
      child = spawn(
        python,
        [
          `${root}test/backend-conformance/reference_server.py`,
          '--port',
          '0',
          '--models-dir',
          `${root}models`,
        ],
        {
          env: { ...process.env, PIFLOW_BACKEND_SECRET: secret },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      )
      url = await new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout?.setEncoding('utf8').on('data', (s: string) => {
          out += s
          const match = /listening on (http:\/\/\S+)/.exec(out)
          if (match) resolve(match[1] as string)
        })
        child.once('exit', (code) => reject(new Error(`reference server exited with ${code}`)))
      })
    })
    afterAll(() => {
      child?.kill('SIGTERM')
    })

    for (const check of checks) {
      it(check.name, (ctx) => runCheck(check, { url, secret }, (reason) => ctx.skip(reason)))
    }
  })
}
