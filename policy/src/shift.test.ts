import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { unwarp, warp } from './shift.ts'

describe('warp / unwarp', () => {
  it('are inverse, monotonic and fix 0 and 1', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0.1, max: 10, noNaN: true }),
        (tau, s) => {
          expect(unwarp(warp(tau, s), s)).toBeCloseTo(tau, 12)
          expect(warp(Math.min(tau + 0.01, 1), s)).toBeGreaterThanOrEqual(warp(tau, s))
        },
      ),
    )
    expect(warp(0, 3.2)).toBe(0)
    expect(warp(1, 3.2)).toBe(1)
    expect(warp(0.5, 1)).toBe(0.5)
  })
})
