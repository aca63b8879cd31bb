/**
 * @module fixtures
 * Where the reference fixtures live: the repository's own copies in `fixtures/` (the golden policy
 * vectors and the released-format π-Flow adapter cases), so a clone tests the same as the machine they
 * were made on. Environment variables point the suites elsewhere, e.g. at a newer set of cases.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** `PIFLOW_GOLDEN_DIR`, else `fixtures/golden` (format: `fixtures/golden/README.md`). */
export function goldenDir(): string {
  const override = process.env['PIFLOW_GOLDEN_DIR']
  return override ? path.resolve(override) : path.join(REPO_ROOT, 'fixtures/golden')
}

/** `PIFLOW_OFFICIAL_DIR`, else `fixtures/official` (format: `fixtures/official/README.md`). */
export function officialDir(): string {
  const override = process.env['PIFLOW_OFFICIAL_DIR']
  return override ? path.resolve(override) : path.join(REPO_ROOT, 'fixtures/official')
}
