/**
 * @module generate
 * One generation: seeded noise, the few-step sampler and PNG encoding. Student forwards run on the
 * backends (safetensors over HTTP, routed by backends.ts); the policy rollout of each NFE segment runs
 * here at the edge with the shared CPU integrator, or on the backend (`/step`) when the manifest does
 * not allow edge integration (large latents: shipping K means costs more than integrating).
 */
import {
  initialLatents,
  latentShape,
  latentToRgba,
  ManifestError,
  samplingFor,
} from '@piflow/models'
import {
  createCpuIntegrator,
  decodeSafetensors,
  encodeSafetensors,
  type LatentShape,
  type PolicyOutput,
  type SafetensorsTensor,
  type Schedule,
  sample,
} from '@piflow/policy'
import { encode as encodePng } from 'fast-png'
import type { BackendRouter } from './backends.ts'
import { base64, sha256Hex } from './crypto.ts'
import { ApiError, BackendError } from './errors.ts'
import { imageKey } from './images.ts'
import type { LoadedModel } from './models.ts'
import type { NormalizedRequest, StoredImage } from './records.ts'

/** Per-NFE progress, as SSE `progress` events carry it. */
export interface ProgressInfo {
  step: number
  nfe: number
  sigma: number
  /** PNG data URI of image 0's current x0 estimate (GM at the edge) or state (otherwise) */
  preview?: string
  previewKind?: 'x0' | 'state'
}

export interface GenerationHooks {
  onProgress?: (info: ProgressInfo) => void | Promise<void>
  onImage?: (image: StoredImage, png: Uint8Array) => void | Promise<void>
}

export interface GenerationPlan {
  model: LoadedModel
  request: NormalizedRequest
  integration: 'edge' | 'backend'
  preview: boolean
}

export interface GenerationOutcome {
  images: StoredImage[]
  backends: string[]
  timings: { forwardMs: number; integrateMs: number; encodeMs: number }
  /** Settles when every PNG is in R2 (and its `onImage` hook has run); rejects if a write failed. */
  stored: Promise<void>
}

/** The schedule and sampling options of `nfe`; a manifest without them is a server fault (500). */
function samplingOf(model: LoadedModel, nfe: number) {
  try {
    return samplingFor(model.manifest, nfe)
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error
    throw new ApiError(500, 'model_manifest_invalid', `No sampling settings for nfe ${nfe}`)
  }
}

/** The conditioning tensors shared by every forward of a request. */
function conditioning(
  model: LoadedModel,
  request: NormalizedRequest,
): Record<string, SafetensorsTensor> {
  const batch = request.count
  const { ids } = model.tokenize(request.prompt)
  const length = ids.length
  const tokens = new BigInt64Array(batch * length)
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < length; i++) tokens[b * length + i] = BigInt(ids[i]!)
  }
  const out: Record<string, SafetensorsTensor> = {
    tokens: { dtype: 'I64', shape: [batch, length], data: tokens },
  }
  if (model.manifest.guidance.input) {
    out['guidance'] = {
      dtype: 'F32',
      shape: [batch],
      data: new Float32Array(batch).fill(request.guidance),
    }
  }
  return out
}

function f32(file: ReturnType<typeof decodeSafetensors>, name: string, size: number): Float32Array {
  const tensor = file.tensors[name]
  if (tensor?.dtype !== 'F32' || tensor.data.length !== size) {
    throw new BackendError(
      502,
      'backend_bad_output',
      `Backend output "${name}" is missing or not F32 with ${size} elements`,
    )
  }
  // NaN/±Inf would reach the image as garbage (or fail the rollout late): refuse them here, where
  // the router can still retry on another backend.
  const data = tensor.data
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new BackendError(
        502,
        'backend_bad_output',
        `Backend output "${name}"[${i}] is ${data[i]}`,
      )
    }
  }
  return data
}

/** decodeSafetensors with its codec errors reported as bad backend output. */
function decodeOutput(bytes: Uint8Array): ReturnType<typeof decodeSafetensors> {
  try {
    return decodeSafetensors(bytes)
  } catch (error) {
    throw new BackendError(
      502,
      'backend_bad_output',
      `Backend output is not valid safetensors: ${(error as Error).message}`,
      { cause: error },
    )
  }
}

/** Decodes a `/forward` answer into the policy output the manifest declares. */
function decodePolicyOutput(
  model: LoadedModel,
  bytes: Uint8Array,
  shape: LatentShape,
): PolicyOutput<Float32Array> {
  const file = decodeOutput(bytes)
  const { batch, channels, height, width } = shape
  const pixels = height * width
  const policy = model.manifest.policy
  if (policy.type === 'gm') {
    const k = policy.k
    return {
      type: 'gm',
      k,
      meansU: f32(file, 'means_u', batch * k * channels * pixels),
      logweights: f32(file, 'logweights', batch * k * pixels),
      logstds: f32(file, 'logstds', batch),
    }
  }
  const n = policy.n
  return { type: 'dx', n, gridU: f32(file, 'grid_u', batch * n * channels * pixels) }
}

/** x0 estimate of image 0 from a GM output: x_src − σ_src · Σ_k softmax(logweights)_k · meansU_k. */
function gmX0(
  output: Extract<PolicyOutput<Float32Array>, { type: 'gm' }>,
  x: Float32Array,
  sigma: number,
  shape: LatentShape,
): Float32Array {
  const { channels, height, width } = shape
  const pixels = height * width
  const k = output.k
  const x0 = new Float32Array(channels * pixels)
  for (let p = 0; p < pixels; p++) {
    let max = -Infinity
    for (let j = 0; j < k; j++) max = Math.max(max, output.logweights[j * pixels + p]!)
    let total = 0
    const weights = new Float64Array(k)
    for (let j = 0; j < k; j++) {
      weights[j] = Math.exp(output.logweights[j * pixels + p]! - max)
      total += weights[j]!
    }
    for (let c = 0; c < channels; c++) {
      let u = 0
      for (let j = 0; j < k; j++) u += weights[j]! * output.meansU[(j * channels + c) * pixels + p]!
      x0[c * pixels + p] = x[c * pixels + p]! - sigma * (u / total)
    }
  }
  return x0
}

function encodeImage(
  latent: Float32Array,
  shape: LatentShape,
  size: number,
  valueRange: readonly [number, number],
): Uint8Array {
  const rgba = latentToRgba(latent, { ...shape, batch: 1 }, size, { valueRange })
  return encodePng({
    width: size,
    height: size,
    data: new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.byteLength),
    channels: 4,
    depth: 8,
  })
}

function previewUri(
  latent: Float32Array,
  shape: LatentShape,
  valueRange: readonly [number, number],
): string {
  return `data:image/png;base64,${base64(encodeImage(latent, shape, shape.width, valueRange))}`
}

/**
 * Runs one generation end to end and writes its PNGs to R2. Progress and images are reported through
 * `hooks` as they happen (SSE); the outcome is returned once the images are encoded, with the R2
 * writes still in flight in `outcome.stored`.
 */
export async function runGeneration(
  plan: GenerationPlan,
  router: BackendRouter,
  bucket: R2Bucket,
  hooks: GenerationHooks,
  signal?: AbortSignal,
): Promise<GenerationOutcome> {
  const { model, request } = plan
  const shape = latentShape(model.manifest, request.count)
  const perImage = shape.channels * shape.height * shape.width
  const valueRange = model.manifest.image.valueRange
  const xInit = initialLatents(model.manifest, request.seed, request.count)
  const { perNfe, schedule, eps } = samplingOf(model, request.nfe)
  const cond = conditioning(model, request)
  const backends = new Set<string>()
  const timings = { forwardMs: 0, integrateMs: 0, encodeMs: 0 }
  const path = `/v1/models/${encodeURIComponent(model.id)}`

  const tensors = (x: Float32Array, sigma: number): Record<string, SafetensorsTensor> => ({
    x: { dtype: 'F32', shape: [shape.batch, shape.channels, shape.height, shape.width], data: x },
    sigma: { dtype: 'F32', shape: [shape.batch], data: new Float32Array(shape.batch).fill(sigma) },
    ...cond,
  })

  let x: Float32Array
  if (plan.integration === 'edge') {
    let lastX0: Float32Array | undefined
    let stepStarted = 0
    x = await sample<Float32Array>({
      xInit,
      shape,
      schedule,
      eps,
      temperature: perNfe.temperature,
      ...(model.manifest.policy.type === 'dx'
        ? {
            dx: {
              segmentSize: model.manifest.policy.segmentSize,
              shift: model.manifest.policy.shift,
              mode: model.manifest.policy.mode,
            },
          }
        : {}),
      integrator: createCpuIntegrator() as never,
      ...(signal ? { signal } : {}),
      forward: async (xSrc, sigmaSrc, _step, forwardSignal) => {
        // Decoded inside the router, so an unusable answer is retried on another backend.
        const response = await router.post(
          `${path}/forward`,
          encodeSafetensors(tensors(xSrc, sigmaSrc), { nfe: String(request.nfe) }),
          {
            decode: (bytes) => decodePolicyOutput(model, bytes, shape),
            ...(forwardSignal ? { signal: forwardSignal } : {}),
          },
        )
        backends.add(response.backendId)
        timings.forwardMs += response.ms
        const output = response.value
        if (plan.preview && output.type === 'gm') {
          lastX0 = gmX0(output, xSrc.subarray(0, perImage), sigmaSrc, shape)
        }
        stepStarted = performance.now()
        return output
      },
      onStep: async (info) => {
        timings.integrateMs += performance.now() - stepStarted
        await hooks.onProgress?.({
          step: info.step + 1,
          nfe: info.nfe,
          sigma: info.sigmaDst,
          ...(plan.preview
            ? lastX0
              ? { preview: previewUri(lastX0, shape, valueRange), previewKind: 'x0' as const }
              : {
                  preview: previewUri(info.x.subarray(0, perImage), shape, valueRange),
                  previewKind: 'state' as const,
                }
            : {}),
        })
      },
    })
  } else {
    x = await stepOnBackend(
      plan,
      router,
      schedule,
      perNfe.temperature,
      eps,
      xInit,
      tensors,
      backends,
      timings,
      hooks,
      signal,
    )
  }

  // Each PNG's R2 write starts as soon as it is encoded; the caller awaits `stored` together with its
  // own final writes, so the response waits for one storage round trip instead of two in a row.
  const images: StoredImage[] = []
  const puts: Promise<void>[] = []
  for (let i = 0; i < request.count; i++) {
    signal?.throwIfAborted()
    const started = performance.now()
    const png = encodeImage(
      x.subarray(i * perImage, (i + 1) * perImage),
      shape,
      request.size,
      valueRange,
    )
    const sha256 = await sha256Hex(png)
    timings.encodeMs += performance.now() - started
    const key = imageKey(sha256)
    const image: StoredImage = {
      index: i,
      seed: (request.seed + i) >>> 0,
      key,
      width: request.size,
      height: request.size,
      sha256,
      bytes: png.byteLength,
    }
    images.push(image)
    // The writes run concurrently; each image's event goes out once its URL can be fetched and after
    // the previous image's, so SSE ids stay in order (a Last-Event-ID resume relies on it).
    const put = bucket.put(key, png, { httpMetadata: { contentType: 'image/png' }, sha256 })
    const previous = puts.at(-1)
    puts.push(Promise.all([put, previous]).then(() => hooks.onImage?.(image, png)))
  }
  const stored = Promise.all(puts).then(() => undefined)
  stored.catch(() => {}) // the caller awaits it; this only keeps an early failure from going unhandled
  return { images, backends: [...backends], timings, stored }
}

/** Backend integration: each NFE segment is one `/step` call that returns the state at σ_dst. */
async function stepOnBackend(
  plan: GenerationPlan,
  router: BackendRouter,
  schedule: Schedule,
  temperature: number | 'auto',
  eps: number,
  xInit: Float32Array,
  tensors: (x: Float32Array, sigma: number) => Record<string, SafetensorsTensor>,
  backends: Set<string>,
  timings: GenerationOutcome['timings'],
  hooks: GenerationHooks,
  signal: AbortSignal | undefined,
): Promise<Float32Array> {
  let x = xInit
  const nfe = schedule.steps.length
  const perImage = x.length / plan.request.count
  const path = `/v1/models/${encodeURIComponent(plan.model.id)}/step`
  for (let k = 0; k < nfe; k++) {
    const step = schedule.steps[k]!
    // Same temperature rule as sample(): 'auto' follows the schedule, otherwise the last step is 1.
    const stepTemperature =
      temperature === 'auto' ? step.temperature : k === nfe - 1 ? 1 : temperature
    const body = encodeSafetensors(tensors(x, step.sigmaSrc), {
      nfe: String(plan.request.nfe),
      sigma_dst: String(step.sigmaDst),
      shift: String(schedule.shiftUsed),
      total_substeps: String(schedule.totalSubsteps),
      temperature: String(stepTemperature),
      eps: String(eps),
    })
    const size = x.length
    const response = await router.post(path, body, {
      decode: (bytes) => f32(decodeOutput(bytes), 'x', size),
      ...(signal ? { signal } : {}),
    })
    backends.add(response.backendId)
    timings.forwardMs += response.ms
    x = response.value
    await hooks.onProgress?.({
      step: k + 1,
      nfe,
      sigma: step.sigmaDst,
      ...(plan.preview
        ? {
            preview: previewUri(
              x.subarray(0, perImage),
              { batch: 1, ...plan.model.manifest.latent },
              plan.model.manifest.image.valueRange,
            ),
            previewKind: 'state' as const,
          }
        : {}),
    })
  }
  return x
}
