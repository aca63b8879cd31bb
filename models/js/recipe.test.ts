import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { parseManifest } from './manifest.ts'
import { pythonOutput, pythonSkipReason, readJson, runPython } from './test-support.ts'
import { createTokenizer, tokenize } from './tokenizer.ts'

const skip = pythonSkipReason(['torch', 'numpy', 'onnx', 'PIL'])

function python(args: string[]) {
  const run = runPython(args)
  expect(run.status, pythonOutput(args, run)).toBe(0)
  return run
}

describe.skipIf(skip !== null)(
  `training recipe (PyTorch) ${skip ? `— skipped: ${skip}` : ''}`,
  () => {
    it('reproduces the golden pi-ID bookkeeping, GM velocities and the noise vectors; gradients check (float64)', () => {
      const run = python([
        '-m',
        'unittest',
        '-v',
        'models.recipe.tests.test_golden',
        'models.recipe.tests.test_flow_grad',
        'models.recipe.tests.test_noise',
      ])
      // unittest reports on stderr; make sure nothing was silently skipped
      expect(run.stderr).toMatch(/\nOK\b/)
      expect(run.stderr).not.toMatch(/skipped/)
    })

    it('smoke: prepare -> teacher -> pi-ID -> export on a tiny config, model runs in onnxruntime', async () => {
      const out = mkdtempSync(join(tmpdir(), 'piflow-smoke-'))
      try {
        const run = python(['-m', 'models.recipe.smoke', '--out', out])
        const summary = JSON.parse(run.stdout.trim().split('\n').pop() as string)
        expect(summary.studentSteps).toBe(3)
        const dir = summary.modelDir as string
        const manifest = parseManifest(readJson(join(dir, 'manifest.json')))
        for (const file of Object.values(manifest.files)) {
          const bytes = readFileSync(join(dir, file.path))
          expect(createHash('sha256').update(bytes).digest('hex')).toBe(file.sha256)
        }
        const tokenizer = createTokenizer(readJson(join(dir, 'tokenizer.json')))
        const { channels: c, height: h, width: w } = manifest.latent
        const session = await ort.InferenceSession.create(join(dir, manifest.files.student.path))
        try {
          const res = await session.run({
            x: new ort.Tensor('float32', new Float32Array(c * h * w).fill(0.1), [1, c, h, w]),
            sigma: new ort.Tensor('float32', Float32Array.of(0.5), [1]),
            tokens: new ort.Tensor('int64', tokenize(tokenizer, 'grinning face'), [
              1,
              tokenizer.maxLength,
            ]),
          })
          expect(Array.from(res.means_u.dims)).toEqual([
            1,
            manifest.policy.type === 'gm' ? manifest.policy.k : 0,
            c,
            h,
            w,
          ])
          expect(Array.from(res.logstds.dims)).toEqual([1, 1, 1, 1, 1])
          expect((res.means_u.data as Float32Array).every(Number.isFinite)).toBe(true)
        } finally {
          await session.release()
        }
      } finally {
        rmSync(out, { recursive: true, force: true })
      }
    })
  },
)
