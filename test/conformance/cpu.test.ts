/**
 * Every golden case against the CPU policy module at the case's tolerance: float64 (the JS kernel, the
 * reference) and float32 with each GM kernel (WebAssembly SIMD, the default fast path, and JS).
 * The directory is ../shared/golden or PIFLOW_GOLDEN_DIR (a missing explicit directory fails).
 */
import { existsSync } from 'node:fs'
import { configureGmKernel, type GmKernelChoice } from '@piflow/policy'
import { afterAll, describe, expect, it } from 'vitest'
import { type Dtype, goldenDir, loadCases } from './cases.ts'
import { runAndCheckCpu } from './cpu.ts'

const dir = goldenDir()
const explicit = Boolean(process.env['PIFLOW_GOLDEN_DIR'])
const available = existsSync(dir)
const VARIANTS: [Dtype, GmKernelChoice][] = [
  ['float64', 'js'],
  ['float32', 'wasm'],
  ['float32', 'js'],
]

describe.skipIf(!available && !explicit)(`golden conformance, CPU (${dir})`, () => {
  const cases = available ? loadCases(dir) : []

  it('finds golden cases', () => {
    expect(available, `golden directory ${dir} is missing`).toBe(true)
    expect(cases.length).toBeGreaterThan(0)
  })

  afterAll(() => configureGmKernel({ kernel: 'auto' }))

  for (const c of cases) {
    for (const [dtype, kernel] of VARIANTS) {
      it(`${c.id} [${c.kind}] ${dtype}${dtype === 'float32' ? ` (${kernel} kernel)` : ''}`, async () => {
        configureGmKernel({ kernel })
        const result = await runAndCheckCpu(c, dtype)
        const failures = result.fields.filter((f) => !f.ok).map((f) => f.message)
        expect(failures, failures.join('\n')).toEqual([])
      })
    }
  }
})

if (!available && !explicit) {
  describe('golden conformance, CPU', () => {
    it.skip(`skipped: no golden directory at ${dir} (set PIFLOW_GOLDEN_DIR)`, () => {})
  })
}
