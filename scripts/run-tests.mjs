// Runs every suite (typecheck, lint, vitest projects) and prints the closing line CI reads:
// `N passed, N failed, N skipped`. vitest's own summary is not a format CI recognises.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { resolve } from 'node:path'

const report = '.vitest-report.json'
// The test virtualenv made by `scripts/setup.sh --test` (Python reference backend).
if (!process.env.PIFLOW_REFERENCE_PYTHON && existsSync('.toolchain/py/bin/python')) {
  process.env.PIFLOW_REFERENCE_PYTHON = resolve('.toolchain/py/bin/python')
}
let passed = 0
let failed = 0
let skipped = 0

/** passed / failed / skipped summed over the `<testsuite>` elements of a JUnit XML report (pytest's). */
function junitCounts(xml) {
  const counts = { passed: 0, failed: 0, skipped: 0, total: 0 }
  for (const [tag] of xml.matchAll(/<testsuite\b[^>]*>/g)) {
    const attr = (name) => Number(tag.match(new RegExp(`\\b${name}="(\\d+)"`))?.[1] ?? 0)
    const bad = attr('failures') + attr('errors')
    counts.total += attr('tests')
    counts.failed += bad
    counts.skipped += attr('skipped')
    counts.passed += attr('tests') - bad - attr('skipped')
  }
  return counts
}

function step(name, cmd, args) {
  console.log(`\n=== ${name}: ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { stdio: 'inherit' })
  if (r.status === 0) passed++
  else {
    failed++
    console.log(`=== ${name} FAILED (exit ${r.status})`)
  }
}

step('typecheck', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit'])
// The worker compiles against workers-types (no DOM, no Node), so it has tsconfigs of its own.
step('typecheck worker', 'npx', ['tsc', '-p', 'worker/tsconfig.json', '--noEmit'])
step('typecheck worker (node side)', 'npx', ['tsc', '-p', 'worker/tsconfig.node.json', '--noEmit'])
step('lint', 'npx', ['biome', 'check', '.'])

rmSync(report, { force: true })
console.log('\n=== vitest')
const extra = process.argv.slice(2)
const r = spawnSync(
  'npx',
  [
    'vitest',
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
    ...extra,
  ],
  { stdio: 'inherit' },
)
if (existsSync(report)) {
  const json = JSON.parse(readFileSync(report, 'utf8'))
  passed += json.numPassedTests
  failed += json.numFailedTests
  skipped += json.numPendingTests + json.numTodoTests
  // A suite that fails to load has no tests of its own: count it, or a crash would read as green.
  failed += json.testResults.filter(
    (f) => f.status === 'failed' && f.assertionResults.length === 0,
  ).length
  if (json.numTotalTests === 0) failed++
} else {
  failed++
}
if (r.status !== 0 && failed === 0) failed++

// The PyTorch backend's pytest suite (torch-backend/tests, incl. both torch conformance runners), counted
// test by test from its JUnit report so the closing line covers Python too.
const junit = '.pytest-report.xml'
rmSync(junit, { force: true })
console.log('\n=== pytest (torch-backend)')
const py = spawnSync(
  'bash',
  ['scripts/torch-py.sh', '-m', 'pytest', 'torch-backend/tests', '-q', `--junitxml=${junit}`],
  { stdio: 'inherit' },
)
const pyCounts = existsSync(junit) ? junitCounts(readFileSync(junit, 'utf8')) : null
if (pyCounts) {
  passed += pyCounts.passed
  failed += pyCounts.failed
  skipped += pyCounts.skipped
}
// no report (no environment, a crash) or a non-zero exit with no failed test still counts as a failure
if (!pyCounts || (py.status !== 0 && pyCounts.failed === 0) || pyCounts.total === 0) failed++

console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(failed === 0 ? 0 : 1)
