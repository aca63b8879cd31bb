/**
 * @module local/run
 * One in-browser generation on a prepared model (loader.ts): the generation contract of
 * `@piflow/protocol` (noise, sampling settings, conditioning and output tensors), the student on
 * onnxruntime-web, the policy integrated by the prepared integrator, PNG encoding; a result shaped as
 * the API's.
 */
import { latentToRgba, type Manifest } from '@piflow/models'
import { type LatentShape, sample } from '@piflow/policy'
import {
  conditioningTensors,
  forwardInputs,
  type GenerationParams,
  initialLatents,
  latentShape,
  type NamedTensors,
  ProtocolError,
  policyOutputFrom,
  samplingFor,
} from '@piflow/protocol'
import { LocalInferenceError } from '../errors.ts'
import type { GeneratedImage, Generation, Result } from '../types.ts'
import type { PreparedRun } from './loader.ts'
import type { OrtModule } from './ort.ts'
import { encodePng } from './png.ts'
import type { LocalGenerateOptions } from './types.ts'

/** The contract's named tensors as onnxruntime-web feeds. */
const ortFeeds = (ort: OrtModule, tensors: NamedTensors) => {
  const feeds: Record<string, InstanceType<OrtModule['Tensor']>> = {}
  for (const [name, tensor] of Object.entries(tensors)) {
    const type = tensor.dtype === 'I64' ? 'int64' : 'float32'
    feeds[name] = new ort.Tensor(type, tensor.data as Float32Array | BigInt64Array, tensor.shape)
  }
  return feeds
}

/** The student's outputs as the segment's policy output (`bad_output` when they do not fit). */
const studentOutput = (
  manifest: Manifest,
  shape: LatentShape,
  outputs: Record<string, { data: unknown }>,
) => {
  try {
    return policyOutputFrom(manifest, shape, outputs)
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error
    throw new LocalInferenceError('bad_output', `Student ${error.message}`, { cause: error })
  }
}

/** A normalised request of one run. */
export interface LocalRequest {
  id: string
  params: GenerationParams
  tokenIds: number[]
  /** `performance.now()` when the call began (for `totalMs`) */
  started: number
  /** when loading ended (for `loadMs`) */
  loadedAt: number
}

/** Runs `request` on `prepared` and encodes its images. */
export async function runLocal(
  prepared: PreparedRun,
  request: LocalRequest,
  opts: LocalGenerateOptions,
): Promise<Result<Generation>> {
  const { model, opened, integrator } = prepared
  const { params, started } = request
  const { signal } = opts
  const { manifest } = model
  const shape = latentShape(manifest, params.count)
  const perImage = shape.channels * shape.height * shape.width
  const conditioning = conditioningTensors(manifest, request.tokenIds, params)
  const timings = { loadMs: request.loadedAt - started, forwardMs: 0, integrateMs: 0, encodeMs: 0 }
  let stepStarted = 0

  const x = await sample<Float32Array>({
    xInit: initialLatents(manifest, params.seed, params.count),
    shape,
    ...samplingFor(manifest, params.nfe),
    integrator,
    ...(signal ? { signal } : {}),
    forward: async (xSrc, sigmaSrc) => {
      const forwardStarted = performance.now()
      const inputs = forwardInputs(shape, xSrc, sigmaSrc, conditioning)
      const outputs = await opened.session.run(ortFeeds(prepared.ort, inputs))
      timings.forwardMs += performance.now() - forwardStarted
      stepStarted = performance.now()
      return studentOutput(manifest, shape, outputs)
    },
    onStep: (info) => {
      timings.integrateMs += performance.now() - stepStarted
      opts.onProgress?.({ type: 'progress', step: info.step + 1, nfe: info.nfe })
    },
  })

  const images: GeneratedImage[] = []
  for (let i = 0; i < params.count; i++) {
    signal?.throwIfAborted()
    const encodeStarted = performance.now()
    const rgba = latentToRgba(
      x.subarray(i * perImage, (i + 1) * perImage),
      { ...shape, batch: 1 },
      params.size,
      { valueRange: manifest.image.valueRange },
    )
    const data = await encodePng(rgba, params.size, params.size)
    timings.encodeMs += performance.now() - encodeStarted
    images.push({
      index: i,
      seed: (params.seed + i) >>> 0,
      width: params.size,
      height: params.size,
      contentType: 'image/png',
      data,
    })
  }
  return {
    data: {
      id: request.id,
      status: 'succeeded',
      ...params,
      images,
      path: opened.provider,
      integration: integrator.name,
      cached: false,
      progress: { step: params.nfe, nfe: params.nfe },
      timings: { ...timings, totalMs: performance.now() - started },
      error: null,
    },
    requestId: request.id,
    backend: opened.provider,
    timings: { ...timings, totalMs: performance.now() - started },
    replayed: false,
    ...(prepared.reason ? { reason: prepared.reason } : {}),
  }
}
