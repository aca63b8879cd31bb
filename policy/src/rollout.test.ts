import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PolicySigmaError } from './errors.ts'
import { createGmPolicy } from './gm.ts'
import { rollout, rolloutPerSample, substepCount } from './rollout.ts'
import { unwarp, warp } from './shift.ts'
import type { FloatArray, LatentShape, Policy } from './types.ts'

const shape: LatentShape = { batch: 2, channels: 1, height: 1, width: 2 }
const gm = () =>
  createGmPolicy(
    {
      type: 'gm',
      k: 2,
      meansU: Float64Array.of(0.3, -0.2, 0.8, 0.1, -0.5, 0.4, 0.2, 0.9),
      logweights: Float64Array.of(0, -1, -0.5, 0.3, 0.2, 0, -1, 0.1),
      logstds: Float64Array.of(-1.5, -0.5),
    },
    Float64Array.of(0.5, -1, 0.2, 0.7),
    [1, 1],
    shape,
  )

/** The same policy without the fused step, to exercise the velocity + axpy path. */
const unfused = <T extends FloatArray>(p: Policy<T>): Policy<T> => ({
  shape: p.shape,
  velocity: (out, x, s) => p.velocity(out, x, s),
})

describe('substepCount', () => {
  it('rounds half to even and never returns less than 1', () => {
    expect(substepCount(1, 0.5, 5)).toBe(2) // 2.5 → 2
    expect(substepCount(1, 0.5, 7)).toBe(4) // 3.5 → 4
    expect(substepCount(0.5, 0.5, 128)).toBe(1)
  })
})

describe('rollout', () => {
  it('with one substep equals one Euler step', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.2, max: 1, noNaN: true }),
        fc.double({ min: 0.01, max: 0.9, noNaN: true }),
        (s0, frac) => {
          const s1 = s0 * frac
          const x = Float64Array.of(0.5, -1, 0.2, 0.7)
          const pi = gm()
          const u = pi.velocity(new Float64Array(4), x, [s0, s0])
          const total = 1 / (unwarp(s0, 3) - unwarp(s1, 3)) // exactly one substep
          const r = rollout(pi, x, { sigmaSrc: s0, sigmaDst: s1, shift: 3, totalSubsteps: total })
          expect(r.numSubsteps).toBe(1)
          const expected = Float64Array.of(0.5, -1, 0.2, 0.7).map(
            (v, j) => v + u[j] * (warp(unwarp(s0, 3) - (unwarp(s0, 3) - unwarp(s1, 3)), 3) - s0),
          )
          for (let j = 0; j < 4; j++) expect(x[j]).toBeCloseTo(expected[j], 12)
        },
      ),
      { numRuns: 50 },
    )
  })

  it('fused and unfused paths agree; σ trajectory is recorded', () => {
    const a = Float64Array.of(0.5, -1, 0.2, 0.7)
    const b = a.slice()
    const opts = { sigmaSrc: 1, sigmaDst: 0.3, shift: 3.2, totalSubsteps: 128, recordSigmas: true }
    const ra = rollout(gm(), a, opts)
    rollout(unfused(gm()), b, opts)
    for (let j = 0; j < 4; j++) expect(a[j]).toBeCloseTo(b[j], 13)
    expect(ra.sigmas?.length).toBe(ra.numSubsteps + 1)
    expect(ra.sigmas?.[0]).toBe(1)
    expect(ra.sigmaFinal).toBeCloseTo(0.3, 12)
  })

  it('per-sample segments equal separate rollouts', () => {
    const x = Float64Array.of(0.5, -1, 0.2, 0.7)
    const r = rolloutPerSample(gm(), x, {
      rawSrc: [1, 1],
      rawDst: [0.8, 0.5],
      sigmaSrc: [1, 1],
      shift: 1,
      totalSubsteps: 64,
    })
    expect(Array.from(r.numSubsteps)).toEqual([13, 32])
    const pi = gm()
    const x1 = Float64Array.of(0.5, -1, 0.2, 0.7)
    rolloutPerSample(pi, x1, {
      rawSrc: [1, 1],
      rawDst: [0.5, 0.5],
      sigmaSrc: [1, 1],
      shift: 1,
      totalSubsteps: 64,
    })
    expect(x[2]).toBeCloseTo(x1[2], 14)
    expect(x[3]).toBeCloseTo(x1[3], 14)
  })

  it('rejects σ_dst > σ_src and σ outside [0, 1]', () => {
    const x = new Float64Array(4)
    expect(() =>
      rollout(gm(), x, { sigmaSrc: 0.5, sigmaDst: 0.6, shift: 1, totalSubsteps: 128 }),
    ).toThrow(PolicySigmaError)
    expect(() =>
      rollout(gm(), x, { sigmaSrc: 1.5, sigmaDst: 0.6, shift: 1, totalSubsteps: 128 }),
    ).toThrow(PolicySigmaError)
    expect(() =>
      rollout(gm(), x, { sigmaSrc: 1, sigmaDst: 0, shift: 0, totalSubsteps: 128 }),
    ).toThrow(/shift/)
  })
})

describe('GM subspace rollout (K ≤ C, starting at x_src)', () => {
  const s: LatentShape = { batch: 2, channels: 5, height: 2, width: 3 }
  const make = (K: number, seed: number) => {
    let v = seed
    const rand = () => {
      v = (v * 48271) % 2147483647
      return (v / 2147483647) * 2 - 1
    }
    return {
      output: {
        type: 'gm' as const,
        k: K,
        meansU: Float64Array.from({ length: 2 * K * 5 * 6 }, rand),
        logweights: Float64Array.from({ length: 2 * K * 6 }, () => 2 * rand()),
        logstds: Float64Array.of(-1, -2.5),
      },
      x: Float64Array.from({ length: 2 * 5 * 6 }, rand),
    }
  }

  it('matches the direct per-channel rollout, including the observed trajectory', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 1e6 }),
        fc.double({ min: 0.05, max: 0.95, noNaN: true }),
        (K, seed, sigmaDst) => {
          const { output, x } = make(K, seed)
          const pi = createGmPolicy(output, x, [1, 1], s, { eps: 1e-6, temperature: 0.7 })
          expect(pi.startRollout(x.slice())).not.toBeNull()
          const opts = { sigmaSrc: 1, sigmaDst, shift: 3.2, totalSubsteps: 128 }
          const fast = x.slice()
          const direct = x.slice()
          const trajFast: number[] = []
          const trajDirect: number[] = []
          rollout(pi, fast, { ...opts, onSubstep: (_i, _s, st) => trajFast.push(...st) })
          rollout(unfused(pi), direct, {
            ...opts,
            onSubstep: (_i, _s, st) => trajDirect.push(...st),
          })
          for (let j = 0; j < x.length; j++)
            expect(Math.abs(fast[j] - direct[j])).toBeLessThan(1e-11 * (1 + Math.abs(direct[j])))
          expect(trajFast.length).toBe(trajDirect.length)
          for (let j = 0; j < trajFast.length; j += 7)
            expect(trajFast[j]).toBeCloseTo(trajDirect[j], 10)
        },
      ),
      { numRuns: 30 },
    )
  })

  it('handles a different substep count per sample (π-ID) like the direct path', () => {
    const { output, x } = make(3, 5)
    const pi = createGmPolicy(output, x, [0.9, 0.9], s, { eps: 1e-6 })
    const opts = {
      rawSrc: [0.8, 0.8],
      rawDst: [0.7, -0.05],
      sigmaSrc: [0.9, 0.9],
      shift: 1,
      totalSubsteps: 128,
    }
    const fast = x.slice()
    const direct = x.slice()
    const r = rolloutPerSample(pi, fast, opts)
    rolloutPerSample(unfused(pi), direct, opts)
    expect(Array.from(r.numSubsteps)).toEqual([13, 109])
    for (let j = 0; j < x.length; j++) expect(fast[j]).toBeCloseTo(direct[j], 11)
  })

  it('is used only from the source state and only when K ≤ C', () => {
    const { output, x } = make(3, 7)
    const pi = createGmPolicy(output, x, [0.9, 0.9], s)
    const moved = x.slice()
    moved[4] += 1e-12
    expect(pi.startRollout(moved)).toBeNull()
    const wide = make(6, 7)
    expect(createGmPolicy(wide.output, wide.x, [1, 1], s).startRollout(wide.x)).toBeNull()
  })

  it('Float32Array agrees with Float64Array', () => {
    const { output, x } = make(4, 11)
    const o32 = {
      ...output,
      meansU: Float32Array.from(output.meansU),
      logweights: Float32Array.from(output.logweights),
      logstds: Float32Array.from(output.logstds),
    }
    const x64 = Float64Array.from(Float32Array.from(x))
    const o64 = {
      ...output,
      meansU: Float64Array.from(o32.meansU),
      logweights: Float64Array.from(o32.logweights),
      logstds: Float64Array.from(o32.logstds),
    }
    const x32 = Float32Array.from(x)
    const opts = { sigmaSrc: 1, sigmaDst: 0.3, shift: 3.2, totalSubsteps: 128 }
    rollout(createGmPolicy(o32, x32.slice(), [1, 1], s), x32, opts)
    rollout(createGmPolicy(o64, x64.slice(), [1, 1], s), x64, opts)
    for (let j = 0; j < x.length; j++)
      expect(Math.abs(x32[j] - x64[j])).toBeLessThan(2e-5 * (1 + Math.abs(x64[j])))
  })
})
