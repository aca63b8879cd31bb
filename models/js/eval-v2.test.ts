import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { PYTHON, pythonSkipReason, REPO_ROOT, recipeEnv } from './test-support.ts'

// The environment of the independent evaluation and the v2 recipe (onnxruntime, torch 2, the MiniLM
// package, cairosvg, the v2 art packages): created by `bash models/v2/setup.sh`.
const MODELS_PYTHON =
  process.env.PIFLOW_MODELS_PYTHON ?? join(REPO_ROOT, '.toolchain/models-py/bin/python')
const modelsPySkip = existsSync(MODELS_PYTHON)
  ? null
  : `no ${MODELS_PYTHON}: run \`bash models/v2/setup.sh\` (or set PIFLOW_MODELS_PYTHON)`

/** Runs Python unittest modules and checks that every test ran and passed (nothing silently skipped). */
function unittest(python: string, modules: string[]) {
  const run = spawnSync(python, ['-m', 'unittest', '-v', ...modules], {
    cwd: REPO_ROOT,
    env: recipeEnv(),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  })
  expect(
    run.status,
    `${modules.join(' ')}\n${run.stdout.slice(-2000)}\n${run.stderr.slice(-4000)}`,
  ).toBe(0)
  expect(run.stderr).toMatch(/\nOK\b/)
  expect(run.stderr).not.toMatch(/skipped/)
}

const metricsSkip = pythonSkipReason(['torch', 'numpy'])
describe.skipIf(metricsSkip !== null)(
  `independent evaluation: metrics and feature spaces ${metricsSkip ? `— skipped: ${metricsSkip}` : ''}`,
  () => {
    it('FD, KID, precision/recall, diversity, ranks and the three spaces on known answers', () => {
      unittest(PYTHON, ['models.eval.tests.test_metrics'])
    })
  },
)

describe.skipIf(modelsPySkip !== null)(
  `independent evaluation on the shipped model ${modelsPySkip ? `— skipped: ${modelsPySkip}` : ''}`,
  () => {
    it('onnxruntime sampling reproduces the product fixture; a small run writes the table', () => {
      unittest(MODELS_PYTHON, ['models.eval.tests.test_generate'])
    })
  },
)

describe.skipIf(modelsPySkip !== null)(
  `v2 recipe: data ${modelsPySkip ? `— skipped: ${modelsPySkip}` : ''}`,
  () => {
    it('Noto + Twemoji + Fluent at 64 px, equal style weights, CLDR/emojibase captions with style words', () => {
      unittest(MODELS_PYTHON, ['models.v2.tests.test_prepare'])
    })
  },
)
