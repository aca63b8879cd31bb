/**
 * @module tensors
 * The student's tensors by name: what goes into one forward (the state, σ and the request's
 * conditioning, named as the protocol and the manifest say) and how its outputs become the policy of
 * the segment. The worker sends these over HTTP, the SDK feeds them to onnxruntime-web, the backend
 * reads its onnxruntime outputs with the same mapping.
 */
import type { Manifest } from '@piflow/models'
import type { LatentShape, PolicyOutput } from '@piflow/policy'
import { ProtocolError } from './errors.ts'
import type { GenerationParams } from './request.ts'
import type { SafetensorsTensor } from './safetensors.ts'

/** Input names the protocol fixes (backend/PROTOCOL.md); the guidance input is named by the manifest. */
export const INPUT_NAMES = { x: 'x', sigma: 'sigma', tokens: 'tokens' } as const

/** Output names of a GM student and of a DX student. */
export const OUTPUT_NAMES = {
  gm: { meansU: 'means_u', logweights: 'logweights', logstds: 'logstds' },
  dx: { gridU: 'grid_u' },
} as const

/** Named tensors of one forward (safetensors tensors: the wire format, and easy to hand to ORT). */
export type NamedTensors = Record<string, SafetensorsTensor>

/**
 * The conditioning of a request, the same for every forward: `tokens` (count × maxLength, the prompt's
 * ids on every row) and, when the manifest names a guidance input, the guidance scale under that name.
 */
export function conditioningTensors(
  manifest: Manifest,
  tokenIds: readonly number[],
  params: Pick<GenerationParams, 'count' | 'guidance'>,
): NamedTensors {
  const batch = params.count
  const length = tokenIds.length
  const tokens = new BigInt64Array(batch * length)
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < length; i++) tokens[b * length + i] = BigInt(tokenIds[i]!)
  }
  const out: NamedTensors = {
    [INPUT_NAMES.tokens]: { dtype: 'I64', shape: [batch, length], data: tokens },
  }
  const guidanceInput = manifest.guidance.input
  if (guidanceInput) {
    out[guidanceInput] = {
      dtype: 'F32',
      shape: [batch],
      data: new Float32Array(batch).fill(params.guidance),
    }
  }
  return out
}

/** The inputs of one forward: the state `x` at σ (one σ for the batch) plus the conditioning. */
export function forwardInputs(
  shape: LatentShape,
  x: Float32Array,
  sigma: number,
  conditioning: NamedTensors,
): NamedTensors {
  const { batch, channels, height, width } = shape
  return {
    [INPUT_NAMES.x]: { dtype: 'F32', shape: [batch, channels, height, width], data: x },
    [INPUT_NAMES.sigma]: {
      dtype: 'F32',
      shape: [batch],
      data: new Float32Array(batch).fill(sigma),
    },
    ...conditioning,
  }
}

/** Options of {@link policyOutputFrom}. */
export interface PolicyOutputOptions {
  /**
   * Refuse NaN/±Inf: they would reach the image as garbage (or fail the rollout late). The worker
   * checks, so that an unusable backend answer is retried on another backend. @default false
   */
  requireFinite?: boolean
}

/** A float32 output of `size` elements, or a `bad_output` ProtocolError. */
function float32Output(
  outputs: Readonly<Record<string, { data: unknown } | undefined>>,
  name: string,
  size: number,
  requireFinite: boolean,
): Float32Array {
  const data = outputs[name]?.data
  if (!(data instanceof Float32Array) || data.length !== size) {
    throw new ProtocolError(
      'bad_output',
      `output "${name}" is missing or not float32 with ${size} elements`,
      name,
    )
  }
  if (requireFinite) {
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) {
        throw new ProtocolError('bad_output', `output "${name}"[${i}] is ${data[i]}`, name)
      }
    }
  }
  return data
}

/**
 * The student's outputs at batch shape `shape` as the policy output the manifest declares (GM with its
 * K, or DX with its N), every tensor checked for dtype and size.
 * @throws {ProtocolError} `bad_output` naming the offending tensor.
 */
export function policyOutputFrom(
  manifest: Manifest,
  shape: LatentShape,
  outputs: Readonly<Record<string, { data: unknown } | undefined>>,
  options: PolicyOutputOptions = {},
): PolicyOutput<Float32Array> {
  const { batch, channels, height, width } = shape
  const pixels = height * width
  const finite = options.requireFinite ?? false
  const { policy } = manifest
  if (policy.type === 'gm') {
    const { k } = policy
    const names = OUTPUT_NAMES.gm
    return {
      type: 'gm',
      k,
      meansU: float32Output(outputs, names.meansU, batch * k * channels * pixels, finite),
      logweights: float32Output(outputs, names.logweights, batch * k * pixels, finite),
      logstds: float32Output(outputs, names.logstds, batch, finite),
    }
  }
  const { n } = policy
  return {
    type: 'dx',
    n,
    gridU: float32Output(outputs, OUTPUT_NAMES.dx.gridU, batch * n * channels * pixels, finite),
  }
}

/** The state `x` of a step answer, checked like a policy output. */
export function stateFrom(
  outputs: Readonly<Record<string, { data: unknown } | undefined>>,
  size: number,
  options: PolicyOutputOptions = {},
): Float32Array {
  return float32Output(outputs, INPUT_NAMES.x, size, options.requireFinite ?? false)
}
