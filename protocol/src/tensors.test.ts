import type { Manifest } from '@piflow/models'
import { describe, expect, it } from 'vitest'
import { ProtocolError } from './errors.ts'
import { latentShape } from './plan.ts'
import { normalizeGeneration } from './request.ts'
import { conditioningTensors, forwardInputs, policyOutputFrom } from './tensors.ts'
import { shippedModel } from './test-support.ts'

const model = shippedModel()
const { manifest } = model

/** A GM answer of the right sizes for `batch` images, every value `fill`. */
function gmOutputs(batch: number, fill = 0.5) {
  const k = manifest.policy.type === 'gm' ? manifest.policy.k : 0
  const { channels, height, width } = manifest.latent
  const pixels = height * width
  return {
    means_u: { data: new Float32Array(batch * k * channels * pixels).fill(fill) },
    logweights: { data: new Float32Array(batch * k * pixels).fill(fill) },
    logstds: { data: new Float32Array(batch).fill(fill) },
  }
}

describe('conditioning and forward inputs', () => {
  it('repeats the prompt’s ids on every row of `tokens`', () => {
    const { params, tokenIds } = normalizeGeneration({ prompt: 'red heart', count: 3 }, model)
    const tensors = conditioningTensors(manifest, tokenIds!, params)
    expect(Object.keys(tensors)).toEqual(['tokens']) // this model takes no guidance input
    const tokens = tensors.tokens!
    expect(tokens.dtype).toBe('I64')
    expect(tokens.shape).toEqual([3, manifest.text.maxLength])
    const ids = model.tokenizer.encode('red heart').map(BigInt)
    expect([...tokens.data]).toEqual([...ids, ...ids, ...ids])
  })

  it('names the guidance input as the manifest does', () => {
    const guided = {
      ...manifest,
      guidance: { ...manifest.guidance, input: 'cfg_scale' },
    } as Manifest
    const tensors = conditioningTensors(guided, model.tokenizer.encode('a'), {
      count: 2,
      guidance: 3,
    })
    expect(Object.keys(tensors).sort()).toEqual(['cfg_scale', 'tokens'])
    expect(tensors.cfg_scale).toEqual({ dtype: 'F32', shape: [2], data: new Float32Array([3, 3]) })
  })

  it('adds the state and one σ for the batch', () => {
    const shape = latentShape(manifest, 2)
    const x = new Float32Array(2 * 3 * 32 * 32).fill(0.25)
    const inputs = forwardInputs(shape, x, 0.75, {
      extra: { dtype: 'F32', shape: [2], data: new Float32Array(2) },
    })
    expect(inputs.x).toEqual({ dtype: 'F32', shape: [2, 3, 32, 32], data: x })
    expect(inputs.sigma).toEqual({ dtype: 'F32', shape: [2], data: new Float32Array([0.75, 0.75]) })
    expect(inputs.extra).toBeDefined()
  })
})

describe('policyOutputFrom', () => {
  it('maps a GM student’s outputs onto the policy output of its K', () => {
    const outputs = gmOutputs(2)
    const output = policyOutputFrom(manifest, latentShape(manifest, 2), outputs)
    expect(output).toEqual({
      type: 'gm',
      k: 8,
      meansU: outputs.means_u.data,
      logweights: outputs.logweights.data,
      logstds: outputs.logstds.data,
    })
  })

  it('maps a DX student’s `grid_u`', () => {
    const dx = {
      ...manifest,
      policy: { type: 'dx', n: 4, mode: 'grid', segmentSize: 0.25, shift: 1 },
    }
    const gridU = new Float32Array(4 * 3 * 32 * 32)
    const output = policyOutputFrom(dx as Manifest, latentShape(manifest, 1), {
      grid_u: { data: gridU },
    })
    expect(output).toEqual({ type: 'dx', n: 4, gridU })
  })

  it('refuses a missing, mistyped or mis-sized tensor, naming it', () => {
    const shape = latentShape(manifest, 1)
    const cases = [
      { ...gmOutputs(1), logstds: undefined },
      { ...gmOutputs(1), logstds: { data: new Float64Array(1) } },
      { ...gmOutputs(1), means_u: { data: new Float32Array(7) } },
    ]
    const blamed = cases.map((outputs) => {
      try {
        policyOutputFrom(manifest, shape, outputs)
        return 'accepted'
      } catch (error) {
        expect(error).toBeInstanceOf(ProtocolError)
        expect((error as ProtocolError).code).toBe('bad_output')
        return (error as ProtocolError).field
      }
    })
    expect(blamed).toEqual(['logstds', 'logstds', 'means_u'])
  })

  it('refuses non-finite values only when asked to', () => {
    const shape = latentShape(manifest, 1)
    const outputs = gmOutputs(1)
    outputs.logweights.data[5] = Number.NaN
    expect(policyOutputFrom(manifest, shape, outputs).type).toBe('gm')
    expect(() => policyOutputFrom(manifest, shape, outputs, { requireFinite: true })).toThrow(
      /"logweights"\[5\] is NaN/,
    )
  })
})
