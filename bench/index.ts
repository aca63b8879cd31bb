/**
 * @module bench
 * `npm run bench -- <name>` runs bench/<name>.ts; `npm run bench` runs every bench in turn. Each bench
 * prints its own markdown table with ratios against baselines measured in the same run.
 */

import { readdirSync } from 'node:fs'

const name = process.argv[2]
const available = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.ts') && f !== 'index.ts')
  .map((f) => f.slice(0, -3))
  .sort()
if (name !== undefined && !available.includes(name)) {
  process.stderr.write(
    `unknown bench "${name}"; usage: npm run bench [-- <${available.join('|')}>]\n`,
  )
  process.exit(2)
}
// Benches run in this process one after another (each cleans up after itself).
for (const bench of name === undefined ? available : [name]) {
  if (name === undefined) console.log(`\n=== bench ${bench}\n`)
  await import(`./${bench}.ts`)
}
