import type { Manifest } from '@piflow/models'
import { createCpuIntegrator, type SegmentSpec, sample } from '@piflow/policy'
import { describe, expect, it } from 'vitest'
import { ProtocolError } from './errors.ts'
import { latentShape, samplingFor, stepSegment } from './plan.ts'
import { encodeSafetensors, type SafetensorsTensor } from './safetensors.ts'
import { conditioningTensors, forwardInputs } from './tensors.ts'
import { shippedModel } from './test-support.ts'
import {
  decodeForwardResponse,
  decodeRequest,
  decodeStepResponse,
  encodeForwardRequest,
  encodeForwardResponse,
  encodeStepRequest,
  encodeStepResponse,
  REQUEST_LIMITS,
  requestedNfe,
  stepSegmentOf,
} from './wire.ts'

const model = shippedModel()
const { manifest } = model
const nfe = manifest.sampling.defaultNfe

/** The shipped manifest with a fixed GM temperature for its default NFE. */
const withTemperature = (temperature: number): Manifest => ({
  ...manifest,
  sampling: {
    ...manifest.sampling,
    perNfe: {
      ...manifest.sampling.perNfe,
      [String(nfe)]: { ...manifest.sampling.perNfe[String(nfe)]!, temperature },
    },
  },
})

/** What a ProtocolError thrown by `run` says: its code and field. */
function refusal(run: () => unknown): { code: string; field: string | undefined } {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError)
    return { code: (error as ProtocolError).code, field: (error as ProtocolError).field }
  }
  throw new Error('expected a ProtocolError')
}

/** The segments `sample()` hands the CPU integrator, recorded on the way. */
async function sampledSegments(manifest: Manifest, batch: number): Promise<SegmentSpec[]> {
  const shape = latentShape(manifest, batch)
  const size = batch * 3 * 32 * 32
  const segments: SegmentSpec[] = []
  const cpu = createCpuIntegrator<Float32Array>()
  const gm = { type: 'gm' as const, k: 8 }
  await sample<Float32Array>({
    xInit: new Float32Array(size),
    shape,
    ...samplingFor(manifest, nfe),
    forward: async () => ({
      ...gm,
      meansU: new Float32Array(size * 8),
      logweights: new Float32Array((size * 8) / 3),
      logstds: new Float32Array(batch),
    }),
    integrator: {
      name: 'cpu',
      integrate: (output, x, segment, signal) => {
        segments.push(segment)
        return cpu.integrate(output, x, segment, signal)
      },
    },
  })
  return segments
}

describe('step requests', () => {
  it.each([
    ['auto', manifest],
    ['fixed 0.7', withTemperature(0.7)],
  ])('carry exactly the segments the sampler integrates (temperature %s)', async (_, variant) => {
    const batch = 2
    const shape = latentShape(variant, batch)
    const sampling = samplingFor(variant, nfe)
    const expected = await sampledSegments(variant, batch)
    const conditioning = conditioningTensors(variant, model.tokenizer.encode('a'), {
      count: batch,
      guidance: 3,
    })
    for (let k = 0; k < nfe; k++) {
      const segment = stepSegment(sampling, shape, k)
      expect(segment).toEqual(expected[k])
      const x = new Float32Array(batch * 3 * 32 * 32)
      const body = encodeStepRequest(
        forwardInputs(shape, x, segment.sigmaSrc, conditioning),
        { nfe },
        segment,
      )
      const { tensors, metadata } = decodeRequest(body)
      expect(requestedNfe(metadata)).toBe(String(nfe))
      const sigma = tensors.sigma!.data as Float32Array
      // σ_src travels as float32 in the tensor and exactly in the metadata: the backend integrates
      // the very segment the edge would
      const decoded = stepSegmentOf(metadata, variant, batch, sigma[0]!)
      expect(decoded).toEqual(segment)
      // a client that sends no sigma_src gets the tensor's float32 value
      const { sigma_src: _, ...withoutSigmaSrc } = metadata
      const rounded = stepSegmentOf(withoutSigmaSrc, variant, batch, sigma[0]!)
      expect({ ...rounded, sigmaSrc: segment.sigmaSrc }).toEqual(segment)
      expect(rounded.sigmaSrc).toBe(Math.fround(segment.sigmaSrc))
    }
    const temperatures = expected.map((s) => s.temperature)
    expect(temperatures.at(-1)).toBe(1) // the last step always runs at temperature 1
    if (sampling.temperature !== 'auto') {
      expect(temperatures.slice(0, -1)).toEqual(Array(nfe - 1).fill(0.7))
    }
  })

  it('refuse unusable metadata, naming the key', () => {
    const good = {
      nfe: '4',
      sigma_dst: '0.5',
      shift: '3.2',
      total_substeps: '128',
      temperature: '1',
      eps: '0.0001',
    }
    const refused = (metadata: Record<string, string>, sigmaSrc = 1) =>
      refusal(() => stepSegmentOf(metadata, manifest, 1, sigmaSrc))
    expect(stepSegmentOf(good, manifest, 1, 1).sigmaDst).toBe(0.5)
    const { sigma_dst: _, ...withoutSigmaDst } = good
    expect(refused(withoutSigmaDst)).toEqual({ code: 'invalid_metadata', field: 'sigma_dst' })
    // sigma_src must be the tensor's σ, up to its float32 rounding
    expect(
      stepSegmentOf({ ...good, sigma_src: '0.8' }, manifest, 1, Math.fround(0.8)).sigmaSrc,
    ).toBe(0.8)
    expect(refused({ ...good, sigma_src: '0.9' }, Math.fround(0.8))).toEqual({
      code: 'invalid_metadata',
      field: 'sigma_src',
    })
    expect(refused({ ...good, shift: 'three' })).toEqual({
      code: 'invalid_metadata',
      field: 'shift',
    })
    expect(refused({ ...good, total_substeps: '1.5' })).toEqual({
      code: 'invalid_metadata',
      field: 'total_substeps',
    })
    expect(refused({ ...good, eps: '0.9' })).toEqual({ code: 'invalid_metadata', field: 'eps' })
    expect(refused(good, 0.25)).toEqual({ code: 'invalid_metadata', field: 'sigma_dst' })
  })
})

describe('request bodies', () => {
  it('decode what the forward encoder wrote', () => {
    const shape = latentShape(manifest, 1)
    const x = new Float32Array(3 * 32 * 32).map((_, i) => i / 100)
    const inputs = forwardInputs(
      shape,
      x,
      1,
      conditioningTensors(manifest, model.tokenizer.encode('red'), { count: 1, guidance: 3 }),
    )
    const { tensors, metadata } = decodeRequest(encodeForwardRequest(inputs, { nfe }))
    expect(metadata).toEqual({ nfe: String(nfe) })
    expect(Object.keys(tensors).sort()).toEqual(['sigma', 'tokens', 'x'])
    expect(tensors.x!.data).toEqual(x)
  })

  it(`are refused as malformed beyond ${REQUEST_LIMITS.maxTensors} tensors or when not safetensors`, () => {
    const many: Record<string, SafetensorsTensor> = {}
    for (let i = 0; i <= REQUEST_LIMITS.maxTensors; i++) {
      many[`t${i}`] = { dtype: 'F32', shape: [1], data: new Float32Array(1) }
    }
    expect(refusal(() => decodeRequest(encodeSafetensors(many))).code).toBe('malformed_safetensors')
    expect(refusal(() => decodeRequest(new Uint8Array([1, 2, 3]))).code).toBe(
      'malformed_safetensors',
    )
  })
})

describe('answers', () => {
  it('a forward answer decodes into the policy output the manifest declares', () => {
    const shape = latentShape(manifest, 1)
    const meansU = new Float32Array(8 * 3 * 32 * 32).fill(0.1)
    const logweights = new Float32Array(8 * 32 * 32).fill(-2)
    const logstds = new Float32Array([-1.5])
    const bytes = encodeForwardResponse({
      means_u: { dims: [1, 8, 3, 32, 32], data: meansU },
      logweights: { dims: [1, 8, 1, 32, 32], data: logweights },
      logstds: { dims: [1, 1, 1, 1, 1], data: logstds },
    })
    expect(decodeForwardResponse(bytes, manifest, shape)).toEqual({
      type: 'gm',
      k: 8,
      meansU,
      logweights,
      logstds,
    })
    expect(refusal(() => decodeForwardResponse(bytes.subarray(0, 40), manifest, shape)).code).toBe(
      'bad_output',
    )
  })

  it('a step answer decodes into the state, refusing NaN when asked', () => {
    const shape = latentShape(manifest, 2)
    const x = new Float32Array(2 * 3 * 32 * 32).fill(0.5)
    const bytes = encodeStepResponse(x, shape, { sigmaDst: 0.25, numSubsteps: 17 })
    expect(decodeStepResponse(bytes, shape)).toEqual(x)
    expect(decodeRequest(bytes).metadata).toEqual({ sigma: '0.25', num_substeps: '17' })
    x[3] = Number.POSITIVE_INFINITY
    const bad = encodeStepResponse(x, shape, { sigmaDst: 0.25, numSubsteps: 17 })
    expect(refusal(() => decodeStepResponse(bad, shape, { requireFinite: true }))).toEqual({
      code: 'bad_output',
      field: 'x',
    })
    expect(refusal(() => decodeStepResponse(bytes, latentShape(manifest, 3))).field).toBe('x')
  })
})
