import { ManifestError } from '@piflow/models'
import { buildSchedule, randn } from '@piflow/policy'
import { describe, expect, it } from 'vitest'
import { initialLatents, latentShape, samplingFor } from './plan.ts'
import { shippedModel } from './test-support.ts'

const { manifest } = shippedModel()
const { channels, height, width } = manifest.latent
const per = channels * height * width

describe('generation plan', () => {
  it('latentShape is the manifest latent with the batch size', () => {
    expect(latentShape(manifest, 3)).toEqual({ batch: 3, channels, height, width })
  })

  it('image i of seed s is randn((s + i) mod 2^32), whatever the count', () => {
    const seed = 2 ** 32 - 2
    const x = initialLatents(manifest, seed, 3)
    expect(x.length).toBe(3 * per)
    for (const [i, s] of [seed, seed + 1, 0].entries()) {
      const expected = new Float32Array(per)
      randn(expected, s)
      expect(x.subarray(i * per, (i + 1) * per)).toEqual(expected)
    }
    expect(initialLatents(manifest, seed + 1, 1)).toEqual(x.subarray(per, 2 * per))
  })

  it('samplingFor builds the schedule from the per-NFE settings', () => {
    const nfe = manifest.sampling.defaultNfe
    const perNfe = manifest.sampling.perNfe[String(nfe)]!
    const sampling = samplingFor(manifest, nfe)
    expect(sampling.perNfe).toBe(perNfe)
    expect(sampling.eps).toBe(manifest.sampling.eps)
    expect(sampling.temperature).toBe(perNfe.temperature)
    expect(sampling.schedule).toEqual(
      buildSchedule({
        nfe,
        shift: perNfe.shift,
        finalStepSizeScale: perNfe.finalStepSizeScale,
        totalSubsteps: perNfe.totalSubsteps,
      }),
    )
  })

  it('samplingFor rejects an nfe the manifest has no settings for', () => {
    expect(() => samplingFor(manifest, 999)).toThrow(ManifestError)
  })
})
