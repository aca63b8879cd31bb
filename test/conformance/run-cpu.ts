/**
 * `npm run conformance`: every golden case × {float64, float32} against the CPU policy module.
 * Prints one line per case and dtype, failure details, and a closing `N passed, N failed`; exits 1 on
 * any failure. Options: `--dir <path>` (else PIFLOW_GOLDEN_DIR, else ../shared/golden),
 * `--dtype float64|float32`, `--verbose` (every field), any other argument filters case ids.
 */
import { type Dtype, goldenDir, loadCases } from './cases.ts'
import { runAndCheckCpu } from './cpu.ts'

const args = process.argv.slice(2)
let dir = goldenDir()
let dtypes: Dtype[] = ['float64', 'float32']
let verbose = false
const filters: string[] = []
for (let i = 0; i < args.length; i++) {
  const arg = args[i]
  if (arg === '--dir') dir = args[++i]
  else if (arg === '--dtype') dtypes = [args[++i] as Dtype]
  else if (arg === '--verbose' || arg === '-v') verbose = true
  else filters.push(arg)
}

let passed = 0
let failed = 0
try {
  const cases = loadCases(dir).filter(
    (c) => filters.length === 0 || filters.some((f) => c.id.includes(f)),
  )
  console.log(`golden cases: ${dir} (${cases.length} cases)`)
  for (const c of cases) {
    for (const dtype of dtypes) {
      const result = await runAndCheckCpu(c, dtype)
      const label = `${c.id} [${c.kind}] ${dtype}`
      if (result.ok) {
        passed++
        console.log(`PASS ${label} (${result.fields.length} fields)`)
      } else {
        failed++
        console.log(`FAIL ${label}`)
      }
      for (const f of result.fields)
        if (verbose || !f.ok) console.log(`     ${f.ok ? 'ok  ' : 'FAIL'} ${f.message}`)
    }
  }
} catch (error) {
  failed++
  console.log(`FAIL loading cases: ${error instanceof Error ? error.message : String(error)}`)
}
console.log(`${passed} passed, ${failed} failed`)
process.exitCode = failed === 0 ? 0 : 1
