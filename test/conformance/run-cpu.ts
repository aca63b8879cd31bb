/**
 * `npm run conformance`: every golden case against the CPU policy module in float64 and in float32 with
 * each GM kernel (wasm, js).
 * Prints one line per case and dtype, failure details, and a closing `N passed, N failed`; exits 1 on
 * any failure. Options: `--dir <path>` (else PIFLOW_GOLDEN_DIR, else fixtures/golden),
 * `--dtype float64|float32`, `--kernel wasm|js` (float32 only), `--verbose` (every field), any other
 * argument filters case ids.
 */
import { configureGmKernel, type GmKernelChoice } from '@piflow/policy'
import { goldenDir } from '../support/fixtures.ts'
import { type Dtype, loadCases } from './cases.ts'
import { runAndCheckCpu } from './cpu.ts'

const args = process.argv.slice(2)
let dir = goldenDir()
let dtypes: Dtype[] = ['float64', 'float32']
let kernels: GmKernelChoice[] = ['wasm', 'js']
let verbose = false
const filters: string[] = []
for (let i = 0; i < args.length; i++) {
  const arg = args[i]
  if (arg === '--dir') dir = args[++i]
  else if (arg === '--dtype') dtypes = [args[++i] as Dtype]
  else if (arg === '--kernel') kernels = [args[++i] as GmKernelChoice]
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
    const variants = dtypes.flatMap((d): [Dtype, GmKernelChoice][] =>
      d === 'float64' ? [['float64', 'js']] : kernels.map((k) => [d, k]),
    )
    for (const [dtype, kernel] of variants) {
      configureGmKernel({ kernel })
      const result = await runAndCheckCpu(c, dtype)
      const label = `${c.id} [${c.kind}] ${dtype}${dtype === 'float32' ? ` ${kernel}` : ''}`
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
