import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PolicyOptionError } from './errors.ts'
import { buildSchedule, dynamicShift } from './schedule.ts'

describe('buildSchedule', () => {
  it('is monotonic and ends at σ = 0 for any nfe, shift, fs, h', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 16 }),
        fc.double({ min: 0.2, max: 8, noNaN: true }),
        fc.double({ min: 0.1, max: 2, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (nfe, shift, fs, h) => {
          const s = buildSchedule({ nfe, shift, finalStepSizeScale: fs, h })
          expect(s.steps).toHaveLength(nfe)
          expect(s.steps[0].sigmaSrc).toBeCloseTo(1, 14)
          expect(s.steps[0].sigmaSrc).toBeLessThanOrEqual(1)
          expect(s.steps[nfe - 1].sigmaDst).toBe(0)
          for (const [k, step] of s.steps.entries()) {
            expect(step.sigmaDst).toBeLessThanOrEqual(step.sigmaSrc)
            expect(step.numSubsteps).toBeGreaterThanOrEqual(1)
            if (k > 0) expect(step.sigmaSrc).toBeLessThan(s.steps[k - 1].sigmaSrc)
          }
          expect(s.totalSubstepsUsed).toBe(s.steps.reduce((a, st) => a + st.numSubsteps, 0))
        },
      ),
    )
  })

  it('uses the auto temperature for all but the last step', () => {
    const s = buildSchedule({ nfe: 4, shift: 3.2, finalStepSizeScale: 0.5 })
    expect(s.steps.map((st) => st.temperature)).toEqual([0.1 * 3, 0.1 * 3, 0.1 * 3, 1])
    expect(s.steps.map((st) => st.numSubsteps)).toEqual([37, 37, 37, 18])
  })

  it('dynamic shift overrides the static shift', () => {
    const d = {
      seqLen: 256,
      baseSeqLen: 256,
      maxSeqLen: 4096,
      baseLogshift: 0.5,
      maxLogshift: 1.15,
    }
    expect(dynamicShift(d)).toBeCloseTo(Math.exp(0.5), 14)
    expect(buildSchedule({ nfe: 2, shift: 3, dynamicShift: d }).shiftUsed).toBeCloseTo(
      Math.exp(0.5),
      14,
    )
  })

  it('rejects bad options', () => {
    expect(() => buildSchedule({ nfe: 0 })).toThrow(PolicyOptionError)
    expect(() => buildSchedule({ nfe: 2.5 })).toThrow(PolicyOptionError)
    expect(() => buildSchedule({ nfe: 2, shift: -1 })).toThrow(PolicyOptionError)
    expect(() => buildSchedule({ nfe: 2, finalStepSizeScale: 0 })).toThrow(PolicyOptionError)
  })
})
