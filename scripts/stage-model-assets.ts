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
import { parseManifest } from '@piflow/models'

const ROOT = resolve(import.meta.dirname, '..')
/** Where wrangler.toml's `[assets] directory` points. */
export const ASSETS_DIR = join(ROOT, '.wrangler/model-assets')

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

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

/** Stages every model under `modelsDir`; returns the ids staged. */
export function stageModelAssets(modelsDir = join(ROOT, 'models'), outDir = ASSETS_DIR): string[] {
  mkdirSync(outDir, { recursive: true })
  const staged: string[] = []
  for (const entry of readdirSync(modelsDir, { withFileTypes: true })) {
    const manifestPath = join(modelsDir, entry.name, 'manifest.json')
    if (!entry.isDirectory() || !existsSync(manifestPath)) continue
    const manifest = parseManifest(JSON.parse(readFileSync(manifestPath, 'utf8')))
    const target = join(outDir, manifest.id)
    for (const file of Object.values(manifest.files)) {
      placeFile(join(modelsDir, entry.name, file.path), join(target, file.path))
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
