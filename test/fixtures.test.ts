/**
 * The repository's fixture copies (`fixtures/golden`, `fixtures/official`) are byte-identical to the
 * shared originals beside the repository (`../shared/…`), file for file. A clone without them (a user's)
 * skips this check and says so; the suites then run on the copies alone.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from './support/fixtures.ts'

/** Every file below `dir`, as paths relative to it, sorted. */
function filesBelow(dir: string, prefix = ''): string[] {
  return readdirSync(path.join(dir, prefix), { withFileTypes: true })
    .flatMap((entry) => {
      const relative = path.join(prefix, entry.name)
      return entry.isDirectory() ? filesBelow(dir, relative) : [relative]
    })
    .sort()
}

for (const name of ['golden', 'official']) {
  const copy = path.join(REPO_ROOT, 'fixtures', name)
  const original = path.resolve(REPO_ROOT, '..', 'shared', name)
  describe(`fixtures/${name}`, () => {
    it('is in the repository', () => {
      expect(filesBelow(copy).length).toBeGreaterThan(0)
    })

    it.skipIf(!existsSync(original))(
      existsSync(original)
        ? `is byte-identical to ${original}`
        : `skipped: no ${original} beside the repository to compare with`,
      () => {
        const files = filesBelow(copy)
        expect(files).toEqual(filesBelow(original))
        const differing = files.filter(
          (file) =>
            !readFileSync(path.join(copy, file)).equals(readFileSync(path.join(original, file))),
        )
        expect(differing).toEqual([])
      },
    )
  })
}
