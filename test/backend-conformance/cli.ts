/**
 * @module cli
 * `npm run conformance:backend -- <url> [--secret <s>]` (secret also from PIFLOW_BACKEND_SECRET):
 * checks any implementation of backend/PROTOCOL.md and exits non-zero if a check fails.
 */

import { parseArgs } from 'node:util'
import { runConformance } from './checks.ts'

const { values, positionals } = parseArgs({
  options: { secret: { type: 'string' } },
  allowPositionals: true,
})
const url = positionals[0]
const secret = values.secret ?? process.env.PIFLOW_BACKEND_SECRET
if (url === undefined || secret === undefined) {
  process.stderr.write(
    'usage: npm run conformance:backend -- <url> [--secret <s>]   (or env PIFLOW_BACKEND_SECRET)\n',
  )
  process.exit(2)
}

const results = await runConformance({ url, secret }, (r) => {
  const mark = r.skipped ? 'skip' : r.ok ? 'ok  ' : 'FAIL'
  process.stdout.write(`${mark} ${r.name} (${r.ms.toFixed(0)} ms)\n`)
  if (r.skipped) process.stdout.write(`     ${r.skipped}\n`)
  if (!r.ok) process.stdout.write(`     ${r.error?.split('\n').join('\n     ')}\n`)
})
const failed = results.filter((r) => !r.ok).length
const skipped = results.filter((r) => r.skipped).length
process.stdout.write(
  `\n${results.length - failed - skipped} passed, ${failed} failed, ${skipped} skipped\n`,
)
process.exit(failed === 0 ? 0 : 1)
