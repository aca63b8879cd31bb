/**
 * Every golden case × {float64, float32} against the CPU policy module, at the case's tolerance.
 * The directory is ../shared/golden or PIFLOW_GOLDEN_DIR (a missing explicit directory fails).
 */
import { existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { type Dtype, goldenDir, loadCases } from './cases.ts'
import { runAndCheckCpu } from './cpu.ts'

const dir = goldenDir()
const explicit = Boolean(process.env['PIFLOW_GOLDEN_DIR'])
const available = existsSync(dir)
const DTYPES: Dtype[] = ['float64', 'float32']

describe.skipIf(!available && !explicit)(`golden conformance, CPU (${dir})`, () => {
  const cases = available ? loadCases(dir) : []

  it('finds golden cases', () => {
    expect(available, `golden directory ${dir} is missing`).toBe(true)
    expect(cases.length).toBeGreaterThan(0)
  })

  for (const c of cases) {
    for (const dtype of DTYPES) {
      it(`${c.id} [${c.kind}] ${dtype}`, async () => {
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
