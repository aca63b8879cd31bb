/**
 * @module parse-manifest
 * `npx tsx scripts/parse-manifest.ts <model-dir>`: the model's manifest.json through `parseManifest` of
 * `@piflow/models` (what the backend, the worker and the SDK run), printed as JSON on stdout; a manifest
 * they would refuse exits 1 with every problem on stderr. Used by the Python side of the recipe
 * (models/v2/tests/test_export.py) to hold an exported model to the product's schema.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseManifest } from '@piflow/models'

const dir = process.argv[2]
if (dir === undefined || process.argv.length > 3) {
  process.stderr.write('usage: npx tsx scripts/parse-manifest.ts <model-dir>\n')
  process.exit(2)
}
try {
  const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')))
  process.stdout.write(`${JSON.stringify(manifest)}\n`)
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`)
  process.exit(1)
}
