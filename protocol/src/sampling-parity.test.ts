import { join } from 'node:path'
import { latentToRgba, nfeSettings, tokenize } from '@piflow/models'
import { type GmOutput, sample } from '@piflow/policy'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initialLatents, latentShape, samplingFor } from './plan.ts'
import { FIXTURES_DIR, MODEL_DIR, readJson, shippedModel } from './test-support.ts'

/** Torch reference of a whole 4-NFE sample (models/recipe/export.py write_sampling_fixture). */
interface SamplingFixture {
  prompt: string
  seeds: number[]
  nfe: number
  shift: number
  finalStepSizeScale: number
  totalSubsteps: number
  eps: number
  tolerance: { atol: number; pixelLevels: number }
  x: { shape: number[]; stride: number; samples: number[]; mean: number }
}

const fixture = readJson(join(FIXTURES_DIR, 'sampling-parity.json')) as SamplingFixture
const { manifest, tokenizer } = shippedModel()

describe('end to end: onnxruntime student + @piflow/policy sampler vs PyTorch', () => {
  let session: ort.InferenceSession
  beforeAll(async () => {
    session = await ort.InferenceSession.create(join(MODEL_DIR, manifest.files.student.path))
  })
  afterAll(async () => {
    await session?.release()
  })

  it('the manifest carries the sampling settings the reference used', () => {
    const s = nfeSettings(manifest, fixture.nfe)
    expect(s.shift).toBe(fixture.shift)
    expect(s.finalStepSizeScale).toBe(fixture.finalStepSizeScale)
    expect(s.totalSubsteps).toBe(fixture.totalSubsteps)
    expect(manifest.sampling.eps).toBe(fixture.eps)
  })

  it(`same seeds and prompt give the same image (atol ${fixture.tolerance.atol})`, async () => {
    const { channels, height, width } = manifest.latent
    const batch = fixture.seeds.length
    const per = channels * height * width
    // the reference sampled consecutive seeds, i.e. one request per the seed contract
    const seed = fixture.seeds[0]!
    expect(fixture.seeds).toEqual(fixture.seeds.map((_, i) => seed + i))
    const shape = latentShape(manifest, batch)
    const xInit = initialLatents(manifest, seed, batch)
    const tokens = new ort.Tensor('int64', tokenize(tokenizer, Array(batch).fill(fixture.prompt)), [
      batch,
      tokenizer.maxLength,
    ])
    const k = manifest.policy.type === 'gm' ? manifest.policy.k : 0
    const { schedule, eps, temperature } = samplingFor(manifest, fixture.nfe)
    const x = await sample<Float32Array>({
      xInit,
      shape,
      schedule,
      eps,
      temperature,
      forward: async (xt, sigmaSrc): Promise<GmOutput<Float32Array>> => {
        const out = await session.run({
          x: new ort.Tensor('float32', xt.slice(), [batch, channels, height, width]),
          sigma: new ort.Tensor('float32', new Float32Array(batch).fill(sigmaSrc), [batch]),
          tokens,
        })
        return {
          type: 'gm',
          k,
          meansU: out.means_u.data as Float32Array,
          logweights: out.logweights.data as Float32Array,
          logstds: out.logstds.data as Float32Array,
        }
      },
    })
    expect([batch, channels, height, width]).toEqual(fixture.x.shape)
    let maxErr = 0
    fixture.x.samples.forEach((exp, j) => {
      maxErr = Math.max(maxErr, Math.abs(x[j * fixture.x.stride] - exp))
    })
    expect(maxErr).toBeLessThanOrEqual(fixture.tolerance.atol)
    const mean = x.reduce((a, v) => a + v, 0) / x.length
    expect(Math.abs(mean - fixture.x.mean)).toBeLessThan(fixture.tolerance.atol / 4)
    // as 8-bit pixels the two paths agree to within a few levels
    const ours = latentToRgba(x, shape, height)
    const refPixel = (v: number) => Math.min(255, Math.max(0, Math.round((v + 1) * 127.5)))
    fixture.x.samples.forEach((exp, j) => {
      const idx = j * fixture.x.stride
      if (idx >= per) return
      const c = Math.floor(idx / (height * width))
      const p = idx % (height * width)
      expect(Math.abs(ours[p * 4 + c] - refPixel(exp))).toBeLessThanOrEqual(
        fixture.tolerance.pixelLevels,
      )
    })
  })
})
