/**
 * @module test/support/model-dirs
 * Model directories the suites serve besides the shipped `models/<id>/`:
 *
 * - the one named by `PIFLOW_TEST_MODEL_DIR` (a model not committed yet, e.g. an export of the next
 *   default model), which the suites that take it run against too, and say they skipped otherwise;
 * - {@link noticeModel}: a copy of the shipped model whose manifest also lists its `NOTICE` (role
 *   `notice`), made in a temporary directory, so the path of a licence file that travels with the
 *   weights is tested in a clone that has only `models/piflow-emoji`.
 */
import { createHash } from 'node:crypto'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import { type Manifest, parseManifest } from '@piflow/models'
import { ROOT } from '../../scripts/local-stack.ts'

/** A model directory and its parsed manifest. */
export interface ModelDir {
  dir: string
  manifest: Manifest
}

/** The shipped default model's directory. */
export const SHIPPED_MODEL_DIR = join(ROOT, 'models/piflow-emoji')

export function readModelDir(dir: string): ModelDir {
  return {
    dir,
    manifest: parseManifest(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))),
  }
}

/** Every committed model directory, `models/<id>/manifest.json` (what a clean clone serves). */
export function committedModelDirs(): ModelDir[] {
  const models = join(ROOT, 'models')
  return readdirSync(models, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(models, e.name, 'manifest.json')))
    .map((e) => readModelDir(join(models, e.name)))
}

/** wrangler.toml's PIFLOW_MODELS, top level (`local`) and `[env.production.vars]`, in order. */
export async function configuredModels(): Promise<{ local: string[]; production: string[] }> {
  const { experimental_readRawConfig } = await import('wrangler')
  const { rawConfig } = experimental_readRawConfig({ config: join(ROOT, 'wrangler.toml') })
  const ids = (vars: Record<string, unknown> | undefined) =>
    String(vars?.PIFLOW_MODELS ?? '')
      .split(',')
      .map((id) => id.trim())
      .filter(Boolean)
  return { local: ids(rawConfig.vars), production: ids(rawConfig.env?.production?.vars) }
}

/** `PIFLOW_TEST_MODEL_DIR`'s model, or why there is none. */
export function testModelDir(): ModelDir | { skipReason: string } {
  const dir = process.env.PIFLOW_TEST_MODEL_DIR
  if (!dir) {
    return {
      skipReason:
        'skipped: PIFLOW_TEST_MODEL_DIR is not set (a model directory to serve besides models/, e.g. an export of piflow-emoji-v2)',
    }
  }
  if (!existsSync(join(dir, 'manifest.json'))) {
    throw new Error(`PIFLOW_TEST_MODEL_DIR=${dir} holds no manifest.json`)
  }
  return readModelDir(resolve(dir))
}

/** The id of {@link noticeModel}'s copy. */
export const NOTICE_MODEL_ID = 'piflow-emoji-notice'

/**
 * Writes `<parent>/piflow-emoji-notice/`: the shipped student and tokenizer, its NOTICE, and a manifest
 * that lists all three (the NOTICE with role `notice`, as the v2 exporter writes it; no teacher).
 */
export function noticeModel(parent: string): ModelDir {
  const shipped = readModelDir(SHIPPED_MODEL_DIR).manifest
  const dir = join(parent, NOTICE_MODEL_ID)
  mkdirSync(dir, { recursive: true })
  const files: Record<string, Manifest['files'][string]> = {}
  for (const key of ['student', 'tokenizer'] as const) {
    const file = shipped.files[key]!
    copyFileSync(join(SHIPPED_MODEL_DIR, file.path), join(dir, file.path))
    files[key] = file
  }
  const notice = readFileSync(join(SHIPPED_MODEL_DIR, 'NOTICE'))
  writeFileSync(join(dir, 'NOTICE'), notice)
  files.notice = {
    path: 'NOTICE',
    sha256: createHash('sha256').update(notice).digest('hex'),
    bytes: notice.byteLength,
    role: 'notice',
    inputs: [],
    outputs: [],
  }
  const { teacher: _teacher, ...rest } = shipped
  const manifest = parseManifest({ ...rest, id: NOTICE_MODEL_ID, files })
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return { dir, manifest }
}
