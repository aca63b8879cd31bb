/**
 * `@piflow/sdk/local` in real headless Chromium on any model directory, against the Node backend: for
 * the shipped `models/piflow-emoji`, a copy of it whose manifest also lists its NOTICE (role `notice`,
 * as the v2 exporter writes it), and the directory `PIFLOW_TEST_MODEL_DIR` names when set (e.g. an
 * export of piflow-emoji-v2; skipped with the reason otherwise). Each model is served to the demo page
 * as `/models/<id>/` and to a real backend process (`--models-dir`), and:
 *
 * - the page generates locally (onnxruntime-web WASM, CPU policy) at the model's native size;
 * - the same prompt and seed through the backend's `/step` (the worker's own codec), turned into
 *   pixels by the same `latentToRgba`, give the same image within the tolerance of sdk.test.ts;
 * - no file outside the student and the tokenizer is fetched (the NOTICE is not a model file).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTokenizer, latentToRgba, type Manifest } from '@piflow/models'
import { latentShape, normalizeGeneration } from '@piflow/protocol'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BackendService, startBackend } from '../../scripts/local-stack.ts'
import { browserUnavailable, launchChromium } from '../support/chromium.ts'
import {
  type ModelDir,
  NOTICE_MODEL_ID,
  noticeModel,
  readModelDir,
  SHIPPED_MODEL_DIR,
  testModelDir,
} from '../support/model-dirs.ts'
import { generateOverSteps } from '../support/step-client.ts'
import { openDemoPage } from './support/demo-suite.ts'
import { type StaticServer, startStaticServer } from './support/static-server.ts'

// The tolerance of sdk.test.ts (same paths: ORT node vs web differ by ≈ 1e-6 on the network output).
const MAX_LEVEL_DIFF = 2
const MAX_MEAN_DIFF = 0.05
const PROMPT = 'red apple'
const SEED = 7

/** `<modelsDir>/<id>/`: the backend reads directories named by id (links to the files are enough). */
const linkForBackend = (modelsDir: string, model: ModelDir) => {
  const dir = join(modelsDir, model.manifest.id)
  mkdirSync(dir)
  for (const name of ['manifest.json', ...Object.values(model.manifest.files).map((f) => f.path)]) {
    symlinkSync(join(model.dir, name), join(dir, name))
  }
}

const envModel = testModelDir()
const envSkip = 'skipReason' in envModel ? envModel.skipReason : undefined
const skipReason = browserUnavailable()

interface PageImage {
  width: number
  rgba: number[]
}

describe.skipIf(skipReason)(
  'SDK in Chromium on a model directory, against the Node backend',
  () => {
    const work = mkdtempSync(join(tmpdir(), 'piflow-sdk-models-'))
    const modelsDir = join(work, 'backend-models')
    const models: Record<string, ModelDir> = {}
    let server: StaticServer
    let browser: Browser
    let backend: BackendService

    beforeAll(async () => {
      execFileSync('npx', ['tsx', join(import.meta.dirname, '../../sdk/build.ts')], {
        stdio: 'pipe',
      })
      mkdirSync(modelsDir)
      const list = [readModelDir(SHIPPED_MODEL_DIR), noticeModel(work)]
      if (!('skipReason' in envModel)) list.push(envModel)
      for (const model of list) {
        models[model.manifest.id] = model
        linkForBackend(modelsDir, model)
      }
      const mounted = list.filter((m) => m.dir !== SHIPPED_MODEL_DIR)
      server = await startStaticServer({
        modelDirs: Object.fromEntries(mounted.map((m) => [m.manifest.id, m.dir])),
      })
      browser = await launchChromium()
      backend = await startBackend({ modelsDir })
    }, 240_000)
    afterAll(async () => {
      await browser?.close()
      await server?.close()
      await backend?.stop()
      rmSync(work, { recursive: true, force: true })
    })

    /** Generates `id` locally in a fresh page (empty Cache API) and through the backend; compares. */
    const compare = async (id: string) => {
      const { dir, manifest } = models[id]!
      const size = manifest.image.height
      const context = await browser.newContext()
      server.resetCounts()
      const page = await openDemoPage(context, server.url)
      const local = await page.evaluate(
        ([input]) =>
          (
            window as unknown as {
              piflowDemo: {
                generate: (
                  path: string,
                  input: unknown,
                ) => Promise<{ backend: string; integration: string; images: PageImage[] }>
              }
            }
          ).piflowDemo.generate('wasm', input),
        [{ model: id, prompt: PROMPT, seed: SEED, size }] as const,
      )
      const fetched = [...server.served.keys()].filter((path) => path.startsWith(`/models/${id}/`))
      await context.close()

      const tokenizer = createTokenizer(
        JSON.parse(readFileSync(join(dir, manifest.files[manifest.text.tokenizer]!.path), 'utf8')),
      )
      const { tokenIds } = normalizeGeneration(
        { prompt: PROMPT, seed: SEED },
        { id, manifest, tokenizer },
      )
      const x = await generateOverSteps(backend, manifest, tokenIds!, SEED)
      const remote = latentToRgba(x, latentShape(manifest, 1), size, {
        valueRange: manifest.image.valueRange,
      })

      expect(local.backend).toBe('wasm')
      expect(local.integration).toBe('cpu')
      const image = local.images[0]!
      expect(image.width).toBe(size)
      expect(image.rgba.length).toBe(remote.length)
      let max = 0
      let sum = 0
      let n = 0
      for (let i = 0; i < remote.length; i++) {
        if (i % 4 === 3) continue
        const d = Math.abs(image.rgba[i]! - remote[i]!)
        max = Math.max(max, d)
        sum += d
        n++
      }
      console.log(
        `${id} local WASM vs Node backend: max |Δ| ${max}, mean |Δ| ${(sum / n).toFixed(4)}`,
      )
      expect(max).toBeLessThanOrEqual(MAX_LEVEL_DIFF)
      expect(sum / n).toBeLessThanOrEqual(MAX_MEAN_DIFF)
      const values = image.rgba.filter((_, i) => i % 4 !== 3)
      expect(Math.max(...values) - Math.min(...values)).toBeGreaterThan(30) // not a blank image
      return { manifest, fetched }
    }

    /**
     * A cold page fetched the manifest, the default NFE's student and the tokenizer, and nothing else of
     * the model directory (the teacher, a NOTICE stay on the server).
     */
    const expectOnlyLoadFiles = (manifest: Manifest, fetched: string[]) => {
      const { id, files, sampling, text } = manifest
      const student = files[sampling.perNfe[sampling.defaultNfe]!.onnx]!
      const tokenizer = files[text.tokenizer]!
      const expected = ['manifest.json', student.path, tokenizer.path].map(
        (f) => `/models/${id}/${f}`,
      )
      expect([...fetched].sort()).toEqual(expected.sort())
    }

    it('the shipped model: same image as the Node backend', async () => {
      const { manifest, fetched } = await compare('piflow-emoji')
      expectOnlyLoadFiles(manifest, fetched)
    }, 120_000)

    it('a manifest listing a NOTICE (role notice): generates, and the NOTICE is never fetched', async () => {
      const { manifest, fetched } = await compare(NOTICE_MODEL_ID)
      expect(manifest.files.notice?.role).toBe('notice')
      expectOnlyLoadFiles(manifest, fetched)
    }, 120_000)

    it.skipIf(envSkip)(
      `PIFLOW_TEST_MODEL_DIR: same image as the Node backend, only its student and tokenizer fetched${envSkip ? ` (${envSkip})` : ''}`,
      async () => {
        const { manifest, fetched } = await compare((envModel as ModelDir).manifest.id)
        expectOnlyLoadFiles(manifest, fetched)
      },
      180_000,
    )
  },
)
