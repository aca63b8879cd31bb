import { describe, expect, it } from 'vitest'
import { createDxPolicy } from './dx.ts'
import { PolicyOptionError, PolicyShapeError } from './errors.ts'
import { warp } from './shift.ts'
import type { LatentShape } from './types.ts'

const shape: LatentShape = { batch: 1, channels: 1, height: 1, width: 2 }
const N = 4
const gridU = Float64Array.from({ length: N * 2 }, (_, i) => Math.sin(i + 1))
const xSrc = Float64Array.of(0.3, -0.4)
const options = { segmentSize: 0.25, shift: 3.2, mode: 'grid' as const }

describe('createDxPolicy', () => {
  it('validates lengths and options', () => {
    expect(() =>
      createDxPolicy({ type: 'dx', n: N, gridU: new Float64Array(3) }, xSrc, [1], shape, options),
    ).toThrow(PolicyShapeError)
    expect(() =>
      createDxPolicy({ type: 'dx', n: N, gridU }, xSrc, [1], shape, {
        ...options,
        mode: 'spline' as 'grid',
      }),
    ).toThrow(PolicyOptionError)
    expect(() =>
      createDxPolicy({ type: 'dx', n: N, gridU }, xSrc, [1], shape, { ...options, shift: 0 }),
    ).toThrow(PolicyOptionError)
  })

  it('grid: node N−1 at the segment start, node 0 at the segment end', () => {
    const pi = createDxPolicy({ type: 'dx', n: N, gridU }, xSrc, [1], shape, options)
    const start = pi.x0Hat(new Float64Array(2), xSrc, [1])
    expect(Array.from(start)).toEqual(Array.from(pi.nodesX0.subarray(6, 8)))
    const end = pi.x0Hat(new Float64Array(2), xSrc, [warp(0.75, 3.2)])
    for (let j = 0; j < 2; j++) expect(end[j]).toBeCloseTo(pi.nodesX0[j], 12)
  })

  it('polynomial: x0_hat = X_0 at τ_src', () => {
    const pi = createDxPolicy({ type: 'dx', n: N, gridU }, xSrc, [0.8], shape, {
      ...options,
      mode: 'polynomial',
    })
    const at = pi.x0Hat(new Float64Array(2), xSrc, [0.8])
    for (let j = 0; j < 2; j++) expect(at[j]).toBeCloseTo(pi.nodesX0[j], 14)
  })

  it('velocity = (x_t − x0_hat)/σ_t and step() is its Euler update', () => {
    const pi = createDxPolicy({ type: 'dx', n: N, gridU }, xSrc, [1], shape, options)
    const xT = Float64Array.of(0.1, 0.2)
    const x0 = pi.x0Hat(new Float64Array(2), xT, [0.9])
    const u = pi.velocity(new Float64Array(2), xT, [0.9])
    const stepped = pi.step(xT.slice(), [0.9], [0.8])
    for (let j = 0; j < 2; j++) {
      expect(u[j]).toBeCloseTo((xT[j] - x0[j]) / 0.9, 12)
      expect(stepped[j]).toBeCloseTo(xT[j] - 0.1 * u[j], 12)
    }
  })
})
