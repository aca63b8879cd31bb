/**
 * @module protocol
 * The request side of the backend protocol (PROTOCOL.md): decoding a body and its step metadata (with the
 * shared wire codec of `@piflow/protocol`), and checking its tensors against the student's declared
 * inputs (names, dtypes, shapes, batch, values). Everything a client can get wrong becomes an
 * InvalidInputError with a stable code.
 */

import type { Manifest } from '@piflow/models'
import type { SegmentSpec } from '@piflow/policy'
import {
  checkRequestPrefix,
  decodeRequest,
  ProtocolError,
  type ProtocolErrorCode,
  requestedNfe,
  type SafetensorsFile,
  type SafetensorsTensor,
  stepSegmentOf,
} from '@piflow/protocol'
import type { FeedTensor } from './batcher.ts'
import { type BackendErrorCode, InvalidInputError } from './errors.ts'
import type { LoadedModel, StudentSession } from './models.ts'

/** The ONNX element types a student input may declare, and their safetensors names. */
const DTYPE_ALIASES: Record<string, { onnx: 'float32' | 'int64'; safetensors: 'F32' | 'I64' }> = {
  float32: { onnx: 'float32', safetensors: 'F32' },
  float: { onnx: 'float32', safetensors: 'F32' },
  F32: { onnx: 'float32', safetensors: 'F32' },
  int64: { onnx: 'int64', safetensors: 'I64' },
  I64: { onnx: 'int64', safetensors: 'I64' },
}

/** A student input/output as the manifest declares it; -1 or a string = dynamic (batch first). */
export interface TensorSpec {
  name: string
  dtype: string
  shape: readonly (number | string)[]
}

/** The wire codec's refusals of a request, and the 400 code each is. */
const REQUEST_ERROR_CODES: Partial<Record<ProtocolErrorCode, BackendErrorCode>> = {
  malformed_safetensors: 'malformed_safetensors',
  invalid_metadata: 'invalid_metadata',
}

/** A request the wire codec refused, as the 400 it is. */
function asInvalidInput(error: unknown): unknown {
  const code = error instanceof ProtocolError ? REQUEST_ERROR_CODES[error.code] : undefined
  if (code === undefined) return error
  return new InvalidInputError(
    code,
    (error as ProtocolError).message,
    (error as ProtocolError).field,
  )
}

/** Decodes a request body (`malformed_safetensors` when it is not valid safetensors). */
export function decodeBody(body: Uint8Array): SafetensorsFile {
  try {
    return decodeRequest(body)
  } catch (error) {
    throw asInvalidInput(error)
  }
}

/** Checks a body's first 8 bytes as decodeBody would (total `Infinity` when not known yet). */
export function checkBodyPrefix(prefix: Uint8Array, totalBytes: number): void {
  try {
    checkRequestPrefix(prefix, totalBytes)
  } catch (error) {
    throw asInvalidInput(error)
  }
}

/** Which student a request addresses: metadata `nfe` picks `sampling.perNfe[nfe].onnx`. */
export function selectStudent(
  model: LoadedModel,
  metadata: Record<string, string>,
): StudentSession {
  const nfe = requestedNfe(metadata)
  if (nfe === undefined) return model.defaultStudent
  const key = model.manifest.sampling.perNfe[nfe]?.onnx
  const student = key === undefined ? undefined : model.students.get(key)
  if (student === undefined) {
    const options = Object.keys(model.manifest.sampling.perNfe).join(', ')
    throw new InvalidInputError('invalid_metadata', `nfe "${nfe}" is not one of ${options}`, 'nfe')
  }
  return student
}

/**
 * Checks the tensors against the student's inputs and returns onnxruntime feeds plus the batch size.
 * Order of checks: names → dtypes → ranks/fixed dims → batch agreement and bound → values.
 */
export function validateInputs(
  model: LoadedModel,
  student: StudentSession,
  tensors: Record<string, SafetensorsTensor>,
  maxBatchSize: number,
): { feeds: Record<string, FeedTensor>; batch: number } {
  const specs = student.file.inputs as readonly TensorSpec[]
  for (const spec of specs) {
    if (!(spec.name in tensors)) {
      throw new InvalidInputError('missing_tensor', `missing tensor "${spec.name}"`, spec.name)
    }
  }
  for (const name of Object.keys(tensors)) {
    if (!specs.some((s) => s.name === name)) {
      const expected = specs.map((s) => s.name).join(', ')
      throw new InvalidInputError(
        'unexpected_tensor',
        `unexpected tensor "${name}" (inputs are ${expected})`,
        name,
      )
    }
  }

  let batch: number | undefined
  const feeds: Record<string, FeedTensor> = {}
  for (const spec of specs) {
    const tensor = tensors[spec.name] as SafetensorsTensor
    const dtype = DTYPE_ALIASES[spec.dtype]
    if (dtype === undefined) throw new Error(`manifest input dtype ${spec.dtype} is not supported`)
    if (tensor.dtype !== dtype.safetensors) {
      throw new InvalidInputError(
        'invalid_dtype',
        `tensor "${spec.name}" must be ${dtype.safetensors}, got ${tensor.dtype}`,
        spec.name,
      )
    }
    const expected = spec.shape.map((d, i) => (i === 0 || typeof d !== 'number' || d < 0 ? 'B' : d))
    const shapeOk =
      tensor.shape.length === spec.shape.length &&
      spec.shape.every(
        (d, i) => i === 0 || typeof d !== 'number' || d < 0 || tensor.shape[i] === d,
      ) &&
      tensor.shape.every((d) => d > 0)
    if (!shapeOk) {
      throw new InvalidInputError(
        'invalid_shape',
        `tensor "${spec.name}" must have shape (${expected.join(', ')}), got (${tensor.shape.join(', ')})`,
        spec.name,
      )
    }
    const rows = tensor.shape[0] as number
    if (batch === undefined) batch = rows
    else if (rows !== batch) {
      throw new InvalidInputError(
        'invalid_shape',
        `tensor "${spec.name}" has batch ${rows} but "${specs[0]?.name}" has ${batch}`,
        spec.name,
      )
    }
    feeds[spec.name] = {
      type: dtype.onnx,
      dims: [...tensor.shape],
      data: tensor.data as Float32Array | BigInt64Array,
    }
  }
  if (batch === undefined) throw new Error('student declares no inputs')
  if (batch > maxBatchSize) {
    throw new InvalidInputError(
      'batch_too_large',
      `batch ${batch} exceeds this backend's limit of ${maxBatchSize}`,
    )
  }
  for (const [name, feed] of Object.entries(feeds)) checkValues(model, name, feed)
  return { feeds, batch }
}

function checkValues(model: LoadedModel, name: string, feed: FeedTensor) {
  if (feed.data instanceof Float32Array) {
    const data = feed.data
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i] as number)) {
        throw new InvalidInputError(
          'non_finite',
          `tensor "${name}" has a non-finite value at ${i}`,
          name,
        )
      }
    }
    if (name === 'sigma') {
      for (const s of data) {
        if (s < 0 || s > 1) {
          throw new InvalidInputError('invalid_value', `sigma must be in [0, 1], got ${s}`, name)
        }
      }
    }
    const guidance = model.manifest.guidance
    if (guidance.input !== null && name === guidance.input) {
      for (const g of data) {
        if (g < guidance.min || g > guidance.max) {
          throw new InvalidInputError(
            'invalid_value',
            `guidance must be in [${guidance.min}, ${guidance.max}], got ${g}`,
            name,
          )
        }
      }
    }
    return
  }
  // int64 token ids: an id outside the embedding table would fail (or read garbage) inside onnxruntime.
  const vocab = model.vocabSize === null ? null : BigInt(model.vocabSize)
  for (const id of feed.data) {
    if (id < 0n || (vocab !== null && id >= vocab)) {
      throw new InvalidInputError(
        'invalid_value',
        `tensor "${name}" id ${id} is outside [0, ${vocab ?? '∞'})`,
        name,
      )
    }
  }
}

/** The segment a step request integrates (`invalid_metadata` when its metadata is unusable). */
export function stepSegment(
  metadata: Record<string, string>,
  manifest: Manifest,
  batch: number,
  sigmaSrc: number,
): SegmentSpec {
  try {
    return stepSegmentOf(metadata, manifest, batch, sigmaSrc)
  } catch (error) {
    throw asInvalidInput(error)
  }
}
