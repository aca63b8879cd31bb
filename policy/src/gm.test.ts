import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  PolicyError,
  PolicyOptionError,
  PolicyShapeError,
  PolicySigmaError,
  PolicyValueError,
} from './errors.ts'
import { createGmPolicy } from './gm.ts'
import type { GmOutput, LatentShape } from './types.ts'

const shape: LatentShape = { batch: 1, channels: 2, height: 1, width: 3 }
const K = 2
const n = 2 * 3

function output(seed = 1): GmOutput<Float64Array> {
  let s = seed
  const rand = () => {
    s = (s * 16807) % 2147483647
    return s / 2147483647 - 0.5
  }
  return {
    type: 'gm',
    k: K,
    meansU: Float64Array.from({ length: K * n }, rand),
    logweights: Float64Array.from({ length: K * 3 }, rand),
    logstds: Float64Array.of(-1),
  }
}
const xSrc = Float64Array.of(0.1, -0.3, 0.5, 0.2, 0.0, -0.7)

describe('createGmPolicy validation', () => {
  it('rejects inconsistent lengths with PolicyShapeError', () => {
    const bad = { ...output(), meansU: new Float64Array(5) }
    expect(() => createGmPolicy(bad, xSrc, [1], shape)).toThrow(PolicyShapeError)
    expect(() => createGmPolicy(output(), new Float64Array(5), [1], shape)).toThrow(
      /xSrc must have 6 elements/,
    )
    expect(() => createGmPolicy(output(), xSrc, [1, 1], shape)).toThrow(PolicyShapeError)
    expect(() => createGmPolicy(output(), xSrc, [1], { ...shape, height: 0 })).toThrow(
      PolicyShapeError,
    )
  })

  it('rejects σ outside [0, 1] or non-finite with PolicySigmaError', () => {
    for (const s of [1.5, -0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => createGmPolicy(output(), xSrc, [s], shape)).toThrow(PolicySigmaError)
    }
    const pi = createGmPolicy(output(), xSrc, [1], shape)
    expect(() => pi.velocity(new Float64Array(n), xSrc, [2])).toThrow(PolicySigmaError)
  })

  it('rejects K < 1, bad eps and temperature with PolicyOptionError', () => {
    expect(() => createGmPolicy({ ...output(), k: 0 }, xSrc, [1], shape)).toThrow(PolicyOptionError)
    expect(() => createGmPolicy(output(), xSrc, [1], shape, { eps: 0 })).toThrow(PolicyOptionError)
    expect(() => createGmPolicy(output(), xSrc, [1], shape, { temperature: -1 })).toThrow(
      PolicyOptionError,
    )
  })

  it('rejects NaN means and all −∞ log-weights with PolicyValueError', () => {
    const nanMeans = output()
    nanMeans.meansU[3] = Number.NaN
    expect(() => createGmPolicy(nanMeans, xSrc, [1], shape)).toThrow(PolicyValueError)
    const dead = output()
    dead.logweights[0] = Number.NEGATIVE_INFINITY
    dead.logweights[3] = Number.NEGATIVE_INFINITY
    expect(() => createGmPolicy(dead, xSrc, [1], shape)).toThrow(/all K log-weights/)
  })

  it('checks the dropout mask length and carries a stable code', () => {
    try {
      createGmPolicy(output(), xSrc, [1], shape, { dropoutMask: [true] })
      expect.unreachable()
    } catch (error) {
      expect(error).toBeInstanceOf(PolicyError)
      expect((error as PolicyError).code).toBe('invalid_shape')
    }
  })
})

describe('GM policy math', () => {
  it('applies dropout and ignores an all-dropped row', () => {
    const pi = createGmPolicy(output(), xSrc, [1], shape, { dropoutMask: [true, false] })
    expect(Array.from(pi.logweightsEffective().subarray(0, 3))).toEqual([
      -Infinity,
      -Infinity,
      -Infinity,
    ])
    const all = createGmPolicy(output(), xSrc, [1], shape, { dropoutMask: [true, true] })
    expect(Array.from(all.dropoutMaskEffective ?? [])).toEqual([0, 0])
    expect(all.logweightsEffective()).toEqual(output().logweights)
  })

  it('at (x_src, σ_src) the velocity is the softmax-weighted mean of the u-space means', () => {
    const out = output()
    const pi = createGmPolicy(out, xSrc, [0.8], shape)
    const u = pi.velocity(new Float64Array(n), xSrc, [0.8])
    for (let p = 0; p < 3; p++) {
      const w0 = Math.exp(out.logweights[p])
      const w1 = Math.exp(out.logweights[3 + p])
      for (let c = 0; c < 2; c++) {
        const expected = (w0 * out.meansU[c * 3 + p] + w1 * out.meansU[n + c * 3 + p]) / (w0 + w1)
        expect(u[c * 3 + p]).toBeCloseTo(expected, 12)
      }
    }
  })

  it('K = 1 with a tiny std reduces to the straight-line velocity (x_t − means_x0)/σ_t', () => {
    fc.assert(
      fc.property(
        fc.float64Array({
          minLength: 4,
          maxLength: 4,
          min: -3,
          max: 3,
          noNaN: true,
          noDefaultInfinity: true,
        }),
        fc.float64Array({
          minLength: 4,
          maxLength: 4,
          min: -3,
          max: 3,
          noNaN: true,
          noDefaultInfinity: true,
        }),
        fc.double({ min: 0.05, max: 1, noNaN: true }),
        fc.double({ min: 0.05, max: 1, noNaN: true }),
        (meansU, x, sigmaSrc, sigmaT) => {
          const s: LatentShape = { batch: 1, channels: 2, height: 1, width: 2 }
          const pi = createGmPolicy(
            {
              type: 'gm',
              k: 1,
              meansU,
              logweights: new Float64Array(2),
              logstds: Float64Array.of(-30),
            },
            x,
            [sigmaSrc],
            s,
          )
          const xT = x.map((v) => v * 0.5 + 0.1)
          const u = pi.velocity(new Float64Array(4), xT, [sigmaT])
          for (let j = 0; j < 4; j++) {
            const m = x[j] - sigmaSrc * meansU[j]
            const expected = (xT[j] - m) / sigmaT
            expect(Math.abs(u[j] - expected)).toBeLessThan(1e-9 * (1 + Math.abs(expected)))
          }
        },
      ),
      { numRuns: 100 },
    )
  })

  it('is invariant to a per-pixel constant added to the log-weights', () => {
    const a = output()
    const b = output()
    for (let p = 0; p < 3; p++) {
      b.logweights[p] += 50 * (p + 1)
      b.logweights[3 + p] += 50 * (p + 1)
    }
    const xT = xSrc.map((v) => v * 0.7)
    const ua = createGmPolicy(a, xSrc, [0.9], shape).velocity(new Float64Array(n), xT, [0.4])
    const ub = createGmPolicy(b, xSrc, [0.9], shape).velocity(new Float64Array(n), xT, [0.4])
    for (let j = 0; j < n; j++) expect(ub[j]).toBeCloseTo(ua[j], 10)
  })

  it('step() equals velocity + Euler, and Float32Array agrees with Float64Array', () => {
    const pi = createGmPolicy(output(), xSrc, [0.9], shape, { temperature: 0.5 })
    const xT = xSrc.map((v) => v * 0.9 + 0.05)
    const u = pi.velocity(new Float64Array(n), xT, [0.6])
    const stepped = pi.step(xT.slice(), [0.6], [0.55])
    for (let j = 0; j < n; j++) expect(stepped[j]).toBeCloseTo(xT[j] + u[j] * -0.05, 13)

    const o = output()
    const o32 = {
      ...o,
      meansU: Float32Array.from(o.meansU),
      logweights: Float32Array.from(o.logweights),
      logstds: Float32Array.from(o.logstds),
    }
    const u32 = createGmPolicy(o32, Float32Array.from(xSrc), [0.9], shape, {
      temperature: 0.5,
    }).velocity(new Float32Array(n), Float32Array.from(xT), [0.6])
    for (let j = 0; j < n; j++)
      expect(Math.abs(u32[j] - u[j])).toBeLessThan(1e-5 * (1 + Math.abs(u[j])))
  })
})
