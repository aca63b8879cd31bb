import { describe, expect, it } from 'vitest'
import { PolicyShapeError } from './errors.ts'
import { createGmPolicy } from './gm.ts'
import { piidSegment, trainSampleT } from './piid.ts'
import { rolloutPerSample } from './rollout.ts'
import { warp } from './shift.ts'
import type { GmOutput, LatentShape } from './types.ts'

const shape: LatentShape = { batch: 2, channels: 1, height: 1, width: 2 }
const output: GmOutput<Float64Array> = {
  type: 'gm',
  k: 2,
  meansU: Float64Array.of(0.3, -0.2, 0.8, 0.1, -0.5, 0.4, 0.2, 0.9),
  logweights: Float64Array.of(0, -1, -0.5, 0.3, 0.2, 0, -1, 0.1),
  logstds: Float64Array.of(-1.5, -0.5),
}
const xSrc = Float64Array.of(0.5, -1, 0.2, 0.7)
const base = {
  output,
  xSrc,
  shape,
  rawSrc: 1,
  sigmaSrc: 1,
  segmentSize: 0.5,
  shift: 1,
  teacherRatio: 0.5,
  numIntermediateStates: 2,
  totalSubsteps: 64,
  eps: 1e-4,
  policyEps: 1e-6,
  studentDraws: [0.2, 0.9, 0.5, 0.1],
  teacherDraws: [0.3, 0.6],
  teacher: (x: Float64Array, sigma: Float64Array) =>
    x.map((v, j) => -0.5 * v + 0.1 * sigma[j >> 1]),
}

describe('trainSampleT', () => {
  it('maps draws to segments (index 1 = the shortened last segment)', () => {
    const r = trainSampleT([1, 0.7, 0.1, 0], { nfe: 4, finalStepSizeScale: 0.5, shift: 3.2 })
    expect(Array.from(r.segmentIndex)).toEqual([4, 3, 1, 1])
    expect(r.segmentSize[2]).toBeCloseTo(0.5 / 3.5, 14)
    expect(r.sigmaTSrc[1]).toBeCloseTo(warp(2.5 / 3.5, 3.2), 14)
  })
})

describe('piidSegment', () => {
  it('a window that always covers the teacher span uses the rollout average velocity', async () => {
    const r = await piidSegment({ ...base, windowSubsteps: 3, lossScale: 2 })
    expect(Array.from(r.localOnly)).toEqual([0, 0, 0, 0])
    expect(r.loss).toBeGreaterThan(0)
    expect(r.xA.length).toBe(2 * 4)
  })

  it('local_only states use π(x_a, σ_a) exactly', async () => {
    // no window, tiny teacher gaps (teacher ratio 0) → fewer than 2 substeps ahead → local velocity
    const r = await piidSegment({ ...base, windowSubsteps: 0, teacherRatio: 0 })
    expect(Array.from(r.localOnly)).toEqual([1, 1, 1, 1])
    const pi = createGmPolicy(output, xSrc, [1, 1], shape, { eps: 1e-6 })
    for (let i = 0; i < 2; i++) {
      const xa = r.xA.slice(i * 4, (i + 1) * 4)
      const u = pi.velocity(new Float64Array(4), xa, r.sigmaA.slice(i * 2, i * 2 + 2))
      expect(Array.from(r.predU.slice(i * 4, (i + 1) * 4))).toEqual(Array.from(u))
    }
  })

  it('the teacher sees the states and σ the rollout reached; getXTDst chains to raw_src − L', async () => {
    const seen: number[][] = []
    const r = await piidSegment({
      ...base,
      windowSubsteps: 2,
      getXTDst: true,
      dropoutMask: [true, false, false, false],
      teacher: (x, sigma) => {
        seen.push(Array.from(sigma))
        return base.teacher(x, sigma)
      },
    })
    expect(seen).toEqual([Array.from(r.sigmaA.slice(0, 2)), Array.from(r.sigmaA.slice(2, 4))])
    expect(r.xTDst).toBeDefined()
    // x_t_dst = roll π̄ from the last teacher state (x_b, τ_b) to raw_src − L
    const piBar = createGmPolicy(output, xSrc, [1, 1], shape, {
      eps: 1e-6,
      dropoutMask: [true, false, false, false],
    })
    const xb = r.xA
      .slice(4, 8)
      .map((v, j) => v + r.tgtU[4 + j] * (warp(r.rawB[2 + (j >> 1)], 1) - r.sigmaA[2 + (j >> 1)]))
    const sb = [warp(r.rawB[2], 1), warp(r.rawB[3], 1)]
    rolloutPerSample(piBar, xb, {
      rawSrc: r.rawB.slice(2, 4),
      rawDst: [0.5, 0.5],
      sigmaSrc: sb,
      shift: 1,
      totalSubsteps: 64,
    })
    for (let j = 0; j < 4; j++) expect(r.xTDst?.[j]).toBeCloseTo(xb[j], 14)
  })

  it('validates draw counts', async () => {
    await expect(piidSegment({ ...base, windowSubsteps: 1, studentDraws: [0.1] })).rejects.toThrow(
      PolicyShapeError,
    )
  })
})
