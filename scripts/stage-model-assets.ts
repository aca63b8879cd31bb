/**
 * @module stage-model-assets
 * Stages what the worker publishes as static assets (wrangler.toml `[assets]`): for every
 * `models/<id>/manifest.json`, the manifest and the files it lists, into `.wrangler/model-assets/<id>/`.
 *
 * Why not serve `models/` directly: wrangler dev reloads the worker on any change under the assets
 * directory, and models/ also holds training runs that change every few seconds. The staging copy
 * changes only when a shipped file does; unchanged files are not rewritten (so concurrent stacks do
 * not reload each other) and changed ones are replaced atomically (rename).
 *
 * Runs as wrangler's `[build] command` (deploy and dev) and from scripts/local-stack.ts and the
 * worker tests' global setup. CLI: `npx tsx scripts/stage-model-assets.ts`.
 */
import { createHash } from 'node:crypto'
import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { type ManifestFile, parseManifest } from '@piflow/models'

const ROOT = resolve(import.meta.dirname, '..')
/** Where wrangler.toml's `[assets] directory` points. */
export const ASSETS_DIR = join(ROOT, '.wrangler/model-assets')

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** Why `file` of the model in `dir` is not the one its manifest pins, or undefined when it is. */
function fileMismatch(dir: string, key: string, file: ManifestFile): string | undefined {
  const path = join(dir, file.path)
  if (!existsSync(path)) return `file "${key}" (${file.path}) is missing`
  const bytes = readFileSync(path)
  if (bytes.byteLength !== file.bytes) {
    return `file "${key}" (${file.path}) is ${bytes.byteLength} bytes, the manifest says ${file.bytes}`
  }
  if (sha256(bytes) !== file.sha256) return `file "${key}" (${file.path}) sha256 mismatch`
  return undefined
}

function placeFile(source: string, target: string): boolean {
  const bytes = readFileSync(source)
  if (existsSync(target) && sha256(readFileSync(target)) === sha256(bytes)) return false
  mkdirSync(dirname(target), { recursive: true })
  const temporary = `${target}.${process.pid}.${Date.now()}.tmp`
  try {
    linkSync(source, temporary)
  } catch {
    writeFileSync(temporary, bytes)
  }
  renameSync(temporary, target)
  return true
}

/** Where to stage from and to; every field has a default. */
export interface StageOptions {
  /** directory of `<id>/manifest.json` model directories. @default models/ */
  modelsDir?: string
  /** single model directories (each with a manifest.json) staged besides those of `modelsDir` */
  extraDirs?: readonly string[]
  /** @default {@link ASSETS_DIR} */
  outDir?: string
}

/** The model directories under `modelsDir` (those holding a manifest.json), then `extraDirs`. */
function modelDirectories(modelsDir: string, extraDirs: readonly string[]): string[] {
  const shipped = readdirSync(modelsDir, { withFileTypes: true })
    .filter(
      (entry) => entry.isDirectory() && existsSync(join(modelsDir, entry.name, 'manifest.json')),
    )
    .map((entry) => join(modelsDir, entry.name))
  for (const dir of extraDirs) {
    if (!existsSync(join(dir, 'manifest.json'))) throw new Error(`no manifest.json in ${dir}`)
  }
  return [...shipped, ...extraDirs.map((dir) => resolve(dir))]
}

/**
 * Stages every model: its manifest and every file the manifest lists (ONNX, tokenizer, and the
 * `notice` whose attribution must travel with the weights). A model with a file that is not the one
 * its manifest pins (byte size, sha256) is left out with a warning, as the backend refuses it: an
 * export in progress rewrites the files before the manifest, and the CDN would serve a wrong file
 * under an immutable URL for a year. Returns the ids staged.
 */
export function stageModelAssets(options: StageOptions = {}): string[] {
  const outDir = options.outDir ?? ASSETS_DIR
  mkdirSync(outDir, { recursive: true })
  const staged: string[] = []
  for (const dir of modelDirectories(
    options.modelsDir ?? join(ROOT, 'models'),
    options.extraDirs ?? [],
  )) {
    const manifestPath = join(dir, 'manifest.json')
    const manifest = parseManifest(JSON.parse(readFileSync(manifestPath, 'utf8')))
    if (staged.includes(manifest.id))
      throw new Error(`two model directories have the id ${manifest.id}`)
    const mismatch = Object.entries(manifest.files)
      .map(([key, file]) => fileMismatch(dir, key, file))
      .find((reason) => reason !== undefined)
    if (mismatch) {
      console.warn(`stage-model-assets: left out ${manifest.id} (${dir}): ${mismatch}`)
      continue
    }
    const target = join(outDir, manifest.id)
    for (const file of Object.values(manifest.files)) {
      placeFile(join(dir, file.path), join(target, file.path))
    }
    placeFile(manifestPath, join(target, 'manifest.json'))
    staged.push(manifest.id)
  }
  // Drop models that no longer exist.
  for (const entry of readdirSync(outDir, { withFileTypes: true })) {
    if (entry.isDirectory() && !staged.includes(entry.name)) {
      rmSync(join(outDir, entry.name), { recursive: true, force: true })
    }
  }
  return staged
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const ids = stageModelAssets()
  console.log(`staged model assets: ${ids.join(', ') || '(none)'} → ${ASSETS_DIR}`)
}
