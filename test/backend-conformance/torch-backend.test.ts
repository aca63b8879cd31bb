import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, it } from 'vitest'
import { checks, runCheck } from './checks.ts'
import { type ListeningServer, spawnListening } from './spawn-server.ts'

// The protocol conformance suite against the PyTorch backend (torch-backend/): a real
// `python -m piflow_torch.server` process serving the tiny fixture models on the CPU (real diffusers text
// encoders, VAE and transformer, the π-Flow loader and sampler). Its forward/step checks are skipped (the
// models serve whole generations); the per-NFE delay lets the cancellation checks catch a generation
// mid-way on a fast CPU. Needs the PyTorch environment of `scripts/setup.sh --test` (or PIFLOW_TORCH_PYTHON).
const root = fileURLToPath(new URL('../../', import.meta.url))
const python = process.env.PIFLOW_TORCH_PYTHON ?? `${root}.toolchain/torch-py/bin/python`
const manifests = `${root}torch-backend/fixtures/manifests`

if (!existsSync(python)) {
  describe('backend conformance (PyTorch backend)', () => {
    it.skip(`skipped: no PyTorch environment at ${python} (run scripts/setup.sh --test or set PIFLOW_TORCH_PYTHON)`, () => {})
  })
} else {
  describe('backend conformance (PyTorch backend)', () => {
    const secret = randomBytes(16).toString('hex')
    let server: ListeningServer
    beforeAll(async () => {
      server = await spawnListening(
        python,
        [
          '-m',
          'piflow_torch.server',
          '--port',
          '0',
          '--model',
          `${manifests}/piflux-tiny.json`,
          '--model',
          `${manifests}/piqwen-tiny.json`,
          '--debug-step-delay-ms',
          '100',
        ],
        {
          cwd: root,
          env: {
            ...process.env,
            PIFLOW_BACKEND_SECRET: secret,
            PYTHONPATH: `${root}torch-backend`,
          },
        },
      )
    }, 300_000)
    afterAll(() => server?.stop())

    for (const check of checks) {
      it(
        check.name,
        (ctx) => runCheck(check, { url: server.url, secret }, (reason) => ctx.skip(reason)),
        120_000,
      )
    }
  })
}
