/**
 * @module wire
 * The backend protocol's wire format (backend/PROTOCOL.md), both sides of it: headers, the forward and
 * step requests (safetensors tensors + `__metadata__` strings) and their answers. The worker encodes
 * requests and decodes answers with these functions, the Node backend decodes requests and encodes
 * answers with the same ones, so the two cannot drift; a third-party backend implements PROTOCOL.md.
 */
import type { Manifest } from '@piflow/models'
import type { LatentShape, PolicyOutput, SegmentSpec } from '@piflow/policy'
import { z } from 'zod'
import { ProtocolError } from './errors.ts'
import { dxSegmentOptions, latentShape } from './plan.ts'
import {
  decodeSafetensors,
  encodeSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  safetensorsHeaderLength,
} from './safetensors.ts'
import {
  INPUT_NAMES,
  type NamedTensors,
  type PolicyOutputOptions,
  policyOutputFrom,
  stateFrom,
} from './tensors.ts'

/** Request header carrying the shared secret (every `/v1/*` call). */
export const SECRET_HEADER = 'X-Piflow-Backend-Secret'
/**
 * Request header of `/forward` and `/step`: the caller's id for the request (the worker sends its
 * generation id), which `POST /v1/requests/:id/cancel` names to stop it.
 */
export const CANCEL_ID_HEADER = 'X-Piflow-Request-Id'
/** Response header: rows in the onnxruntime run that served this request. */
export const BATCH_SIZE_HEADER = 'X-Piflow-Batch-Size'
/** Response header: the execution provider that ran the forward. */
export const EXECUTION_PROVIDER_HEADER = 'X-Piflow-Execution-Provider'
/** Content type of every tensor body. */
export const TENSORS_CONTENT_TYPE = 'application/octet-stream'

/** Bounds of a request body's safetensors header: a forward has a handful of tensors. */
export const REQUEST_LIMITS = { maxTensors: 64, maxHeaderBytes: 64 * 1024 } as const

/** What a forward request says besides its tensors. */
export interface ForwardMetadata {
  /** The NFE count the request samples with: it picks the student (`sampling.perNfe[nfe].onnx`). */
  nfe: number
}

// Metadata values are strings (the format allows nothing else); numbers are written in decimal, as
// `String(number)` does (shortest round trip), and read back exactly.
const decimal = z
  .string()
  .trim()
  .regex(/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, 'must be a decimal number')
  .transform(Number)
const integer = z.string().trim().regex(/^\d+$/, 'must be a non-negative integer').transform(Number)

/** `__metadata__` of a step request beyond `nfe`: the segment to integrate after the forward. */
const stepMetadataSchema = z.object({
  // σ_src exactly: the `sigma` tensor holds it rounded to float32, and a rollout that starts from the
  // rounded value differs from the edge's (which integrates from the exact one) by ~1e-6, a PNG level
  // in some pixels. Optional: a client that sends none gets the tensor's value, as before.
  sigma_src: z.optional(decimal.pipe(z.number().min(0).max(1))),
  sigma_dst: decimal.pipe(z.number().min(0).max(1)),
  shift: decimal.pipe(z.number().positive().max(1000)),
  total_substeps: integer.pipe(z.number().int().min(1).max(10_000)),
  temperature: decimal.pipe(z.number().positive().max(10)),
  eps: decimal.pipe(z.number().positive().max(0.5)),
})

/** Metadata of a forward request. */
const forwardMetadata = (meta: ForwardMetadata): Record<string, string> => ({
  nfe: String(meta.nfe),
})

/** The body of `POST /v1/models/:id/forward`. */
export function encodeForwardRequest(inputs: NamedTensors, meta: ForwardMetadata): Uint8Array {
  return encodeSafetensors(inputs, forwardMetadata(meta))
}

/** The body of `POST /v1/models/:id/step`: the forward's inputs at σ_src, and the segment to σ_dst. */
export function encodeStepRequest(
  inputs: NamedTensors,
  meta: ForwardMetadata,
  segment: SegmentSpec,
): Uint8Array {
  const metadata: Record<keyof z.input<typeof stepMetadataSchema>, string> = {
    sigma_src: String(segment.sigmaSrc),
    sigma_dst: String(segment.sigmaDst),
    shift: String(segment.shift),
    total_substeps: String(segment.totalSubsteps),
    temperature: String(segment.temperature),
    eps: String(segment.eps),
  }
  return encodeSafetensors(inputs, { ...forwardMetadata(meta), ...metadata })
}

/**
 * Decodes a request body within {@link REQUEST_LIMITS}.
 * @throws {ProtocolError} `malformed_safetensors`, the codec's own code in the message.
 */
export function decodeRequest(body: Uint8Array): SafetensorsFile {
  return asRequestError(() => decodeSafetensors(body, REQUEST_LIMITS))
}

/**
 * Checks the first 8 bytes of a request body of `totalBytes` (`Infinity` when unknown) as
 * {@link decodeRequest} would, so that a streamed body can be refused before it is buffered.
 * @throws {ProtocolError} `malformed_safetensors`, as decodeRequest.
 */
export function checkRequestPrefix(prefix: Uint8Array, totalBytes: number): void {
  asRequestError(() => safetensorsHeaderLength(prefix, totalBytes, REQUEST_LIMITS))
}

/** Runs a codec call, turning its SafetensorsError into the request's `malformed_safetensors`. */
function asRequestError<T>(decode: () => T): T {
  try {
    return decode()
  } catch (error) {
    if (!(error instanceof SafetensorsError)) throw error
    throw new ProtocolError(
      'malformed_safetensors',
      `body is not valid safetensors (${error.code}): ${error.message}`,
      error.tensor,
      { cause: error },
    )
  }
}

/** The `nfe` a request names (as sent), or undefined when it names none (the model's default). */
export const requestedNfe = (metadata: Readonly<Record<string, string>>): string | undefined =>
  metadata.nfe

/**
 * The segment a step request asks to integrate, from its metadata, the σ its `sigma` tensor holds and
 * the model (shape, DX parameters). σ_src is the metadata's exact `sigma_src` when sent (it must round
 * to the tensor's float32 σ), else the tensor's. σ_dst must not exceed σ_src: integration runs towards
 * data.
 * @throws {ProtocolError} `invalid_metadata` naming the key.
 */
export function stepSegmentOf(
  metadata: Readonly<Record<string, string>>,
  manifest: Manifest,
  batch: number,
  sigmaSrc: number,
): SegmentSpec {
  const parsed = stepMetadataSchema.safeParse(metadata)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const field = String(issue?.path[0] ?? '')
    throw new ProtocolError(
      'invalid_metadata',
      `metadata "${field}": ${issue?.message ?? 'invalid'}`,
      field,
    )
  }
  const meta = parsed.data
  if (meta.sigma_src !== undefined && Math.fround(meta.sigma_src) !== Math.fround(sigmaSrc)) {
    throw new ProtocolError(
      'invalid_metadata',
      `sigma_src ${meta.sigma_src} is not the sigma of the tensor (${sigmaSrc})`,
      'sigma_src',
    )
  }
  const start = meta.sigma_src ?? sigmaSrc
  if (meta.sigma_dst > start) {
    throw new ProtocolError(
      'invalid_metadata',
      `sigma_dst ${meta.sigma_dst} is above sigma ${start}`,
      'sigma_dst',
    )
  }
  const dx = dxSegmentOptions(manifest)
  return {
    shape: latentShape(manifest, batch),
    sigmaSrc: start,
    sigmaDst: meta.sigma_dst,
    shift: meta.shift,
    totalSubsteps: meta.total_substeps,
    eps: meta.eps,
    temperature: meta.temperature,
    ...(dx ? { dx } : {}),
  }
}

/** A student output as the backend holds it: its dims and float32 data. */
export interface OutputTensor {
  dims: readonly number[]
  data: Float32Array
}

/** The answer of a forward: the student's outputs by their ONNX names, F32. */
export function encodeForwardResponse(outputs: Readonly<Record<string, OutputTensor>>): Uint8Array {
  const tensors: NamedTensors = {}
  for (const [name, tensor] of Object.entries(outputs)) {
    tensors[name] = { dtype: 'F32', shape: [...tensor.dims], data: tensor.data }
  }
  return encodeSafetensors(tensors)
}

/** decodeSafetensors with a codec error reported as unusable output. */
function decodeAnswer(bytes: Uint8Array): SafetensorsFile {
  try {
    return decodeSafetensors(bytes)
  } catch (error) {
    throw new ProtocolError(
      'bad_output',
      `output is not valid safetensors: ${(error as Error).message}`,
      undefined,
      { cause: error },
    )
  }
}

/**
 * A forward answer as the policy output of the segment.
 * @throws {ProtocolError} `bad_output`
 */
export function decodeForwardResponse(
  bytes: Uint8Array,
  manifest: Manifest,
  shape: LatentShape,
  options?: PolicyOutputOptions,
): PolicyOutput<Float32Array> {
  return policyOutputFrom(manifest, shape, decodeAnswer(bytes).tensors, options)
}

/** The answer of a step: the state at σ_dst, with `sigma` and `num_substeps` as metadata. */
export function encodeStepResponse(
  x: Float32Array,
  shape: LatentShape,
  segment: { sigmaDst: number; numSubsteps: number },
): Uint8Array {
  const { batch, channels, height, width } = shape
  return encodeSafetensors(
    { [INPUT_NAMES.x]: { dtype: 'F32', shape: [batch, channels, height, width], data: x } },
    { sigma: String(segment.sigmaDst), num_substeps: String(segment.numSubsteps) },
  )
}

/**
 * The state of a step answer.
 * @throws {ProtocolError} `bad_output`
 */
export function decodeStepResponse(
  bytes: Uint8Array,
  shape: LatentShape,
  options?: PolicyOutputOptions,
): Float32Array {
  const size = shape.batch * shape.channels * shape.height * shape.width
  return stateFrom(decodeAnswer(bytes).tensors, size, options)
}
