/**
 * Every golden case against the CPU policy module at the case's tolerance: float64 (the JS kernel, the
 * reference) and float32 with each GM kernel (WebAssembly SIMD, the default fast path, and JS).
 * The directory is PIFLOW_GOLDEN_DIR, else the repository's fixtures/golden (a missing one fails).
 */
import { configureGmKernel, type GmKernelChoice } from '@piflow/policy'
import { afterAll, describe, expect, it } from 'vitest'
import { goldenDir } from '../support/fixtures.ts'
import { type Dtype, loadCases } from './cases.ts'
import { runAndCheckCpu } from './cpu.ts'

const dir = goldenDir()
const VARIANTS: [Dtype, GmKernelChoice][] = [
  ['float64', 'js'],
  ['float32', 'wasm'],
  ['float32', 'js'],
]

describe(`golden conformance, CPU (${dir})`, () => {
  const cases = loadCases(dir)

  it('finds golden cases', () => {
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
