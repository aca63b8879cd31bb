/**
 * @module generate
 * One generation: seeded noise, the few-step sampler and PNG encoding. Student forwards run on the
 * backends (safetensors over HTTP, routed by backends.ts); the policy rollout of each NFE segment runs
 * here at the edge with the shared CPU integrator, or on the backend (`/step`) when the manifest does
 * not allow edge integration (large latents: shipping K means costs more than integrating). A model
 * generated whole on its backend takes the third path, remote-generation.ts.
 */
import { latentToRgba, ManifestError } from '@piflow/models'
import { createCpuIntegrator, type LatentShape, type PolicyOutput, sample } from '@piflow/policy'
import {
  conditioningTensors,
  decodeForwardResponse,
  decodeStepResponse,
  encodeForwardRequest,
  encodeStepRequest,
  forwardInputs,
  initialLatents,
  latentShape,
  type NamedTensors,
  type SamplingSettings,
  samplingFor,
  stepSegment,
} from '@piflow/protocol'
import { encode as encodePng } from 'fast-png'
import type { BackendRouter } from './backends.ts'
import { base64, sha256Hex } from './crypto.ts'
import { ApiError } from './errors.ts'
import { orderedImageWrites, storedImage } from './images.ts'
import type { LoadedModel } from './models.ts'
import type { NormalizedRequest, ProgressInfo, StoredImage } from './records.ts'
import { type RemoteGenerationPlan, runRemoteGeneration } from './remote-generation.ts'

export interface GenerationHooks {
  onProgress?: (info: ProgressInfo) => void | Promise<void>
  onImage?: (image: StoredImage, png: Uint8Array) => void | Promise<void>
}

/** What a job runs: the sampler here over per-NFE backend calls, or a whole generation remote. */
export type GenerationPlan = ManifestGenerationPlan | RemoteGenerationPlan

export interface ManifestGenerationPlan {
  model: LoadedModel
  request: NormalizedRequest
  /** the prompt's token ids, from normalisation (the prompt is tokenized once per request) */
  tokenIds: number[]
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
function samplingOf(model: LoadedModel, nfe: number): SamplingSettings {
  try {
    return samplingFor(model.manifest, nfe)
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error
    throw new ApiError(500, 'model_manifest_invalid', `No sampling settings for nfe ${nfe}`)
  }
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

/** What the two integration paths share while one generation runs. */
interface Run {
  plan: ManifestGenerationPlan
  router: BackendRouter
  hooks: GenerationHooks
  signal: AbortSignal | undefined
  shape: LatentShape
  sampling: SamplingSettings
  /** tokens (and guidance) of every forward */
  conditioning: NamedTensors
  /** `/v1/models/<id>` on the backends */
  modelPath: string
  backends: Set<string>
  timings: GenerationOutcome['timings']
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
  if (plan.model.kind === 'remote') {
    return runRemoteGeneration(plan as RemoteGenerationPlan, router, bucket, hooks, signal)
  }
  return runManifestGeneration(plan as ManifestGenerationPlan, router, bucket, hooks, signal)
}

/** The sampler here: forwards (or steps) on the backends, PNGs encoded at the edge. */
async function runManifestGeneration(
  plan: ManifestGenerationPlan,
  router: BackendRouter,
  bucket: R2Bucket,
  hooks: GenerationHooks,
  signal: AbortSignal | undefined,
): Promise<GenerationOutcome> {
  const { model, request } = plan
  const run: Run = {
    plan,
    router,
    hooks,
    signal,
    shape: latentShape(model.manifest, request.count),
    sampling: samplingOf(model, request.nfe),
    conditioning: conditioningTensors(model.manifest, plan.tokenIds, request),
    modelPath: `/v1/models/${encodeURIComponent(model.id)}`,
    backends: new Set<string>(),
    timings: { forwardMs: 0, integrateMs: 0, encodeMs: 0 },
  }
  const xInit = initialLatents(model.manifest, request.seed, request.count)
  const x =
    plan.integration === 'edge'
      ? await integrateAtEdge(run, xInit)
      : await stepOnBackend(run, xInit)
  const { images, stored } = await storeImages(run, x, bucket)
  return { images, backends: [...run.backends], timings: run.timings, stored }
}

/** Image 0 of a batch. */
const firstImage = (run: Run, x: Float32Array) =>
  x.subarray(0, run.shape.channels * run.shape.height * run.shape.width)

/** The progress event of a finished NFE step, with a preview of image 0 when asked for. */
function progressOf(
  run: Run,
  step: number,
  sigma: number,
  preview: { latent: Float32Array; kind: 'x0' | 'state' },
): ProgressInfo {
  const nfe = run.sampling.schedule.steps.length
  if (!run.plan.preview) return { step, nfe, sigma }
  const valueRange = run.plan.model.manifest.image.valueRange
  return {
    step,
    nfe,
    sigma,
    preview: previewUri(preview.latent, run.shape, valueRange),
    previewKind: preview.kind,
  }
}

/** Edge integration: forwards on the backends, each segment's rollout here with the CPU integrator. */
async function integrateAtEdge(run: Run, xInit: Float32Array): Promise<Float32Array> {
  const { plan, shape, timings } = run
  let lastX0: Float32Array | undefined
  let stepStarted = 0
  return sample<Float32Array>({
    xInit,
    shape,
    ...run.sampling,
    integrator: createCpuIntegrator<Float32Array>(),
    ...(run.signal ? { signal: run.signal } : {}),
    forward: async (xSrc, sigmaSrc, _step, signal) => {
      // Decoded inside the router, so an unusable answer is retried on another backend.
      const response = await run.router.post(
        `${run.modelPath}/forward`,
        encodeForwardRequest(forwardInputs(shape, xSrc, sigmaSrc, run.conditioning), {
          nfe: plan.request.nfe,
        }),
        {
          decode: (bytes) =>
            decodeForwardResponse(bytes, plan.model.manifest, shape, { requireFinite: true }),
          ...(signal ? { signal } : {}),
        },
      )
      run.backends.add(response.backendId)
      timings.forwardMs += response.ms
      const output = response.value
      if (plan.preview && output.type === 'gm') {
        lastX0 = gmX0(output, firstImage(run, xSrc), sigmaSrc, shape)
      }
      stepStarted = performance.now()
      return output
    },
    onStep: async (info) => {
      timings.integrateMs += performance.now() - stepStarted
      const preview = lastX0
        ? { latent: lastX0, kind: 'x0' as const }
        : { latent: firstImage(run, info.x), kind: 'state' as const }
      await run.hooks.onProgress?.(progressOf(run, info.step + 1, info.sigmaDst, preview))
    },
  })
}

/** Backend integration: each NFE segment is one `/step` call that returns the state at σ_dst. */
async function stepOnBackend(run: Run, xInit: Float32Array): Promise<Float32Array> {
  const { plan, shape } = run
  let x = xInit
  const nfe = run.sampling.schedule.steps.length
  for (let k = 0; k < nfe; k++) {
    const segment = stepSegment(run.sampling, shape, k)
    const inputs = forwardInputs(shape, x, segment.sigmaSrc, run.conditioning)
    const response = await run.router.post(
      `${run.modelPath}/step`,
      encodeStepRequest(inputs, { nfe: plan.request.nfe }, segment),
      {
        decode: (bytes) => decodeStepResponse(bytes, shape, { requireFinite: true }),
        ...(run.signal ? { signal: run.signal } : {}),
      },
    )
    run.backends.add(response.backendId)
    run.timings.forwardMs += response.ms
    x = response.value
    const preview = { latent: firstImage(run, x), kind: 'state' as const }
    await run.hooks.onProgress?.(progressOf(run, k + 1, segment.sigmaDst, preview))
  }
  return x
}

/**
 * Encodes each image and writes it to R2. Each PNG's write starts as soon as it is encoded; the caller
 * awaits `stored` together with its own final writes, so the response waits for one storage round trip
 * instead of two in a row.
 */
async function storeImages(
  run: Run,
  x: Float32Array,
  bucket: R2Bucket,
): Promise<{ images: StoredImage[]; stored: Promise<void> }> {
  const { request, model } = run.plan
  const perImage = run.shape.channels * run.shape.height * run.shape.width
  const images: StoredImage[] = []
  const writes = orderedImageWrites(bucket, run.hooks.onImage)
  for (let i = 0; i < request.count; i++) {
    run.signal?.throwIfAborted()
    const started = performance.now()
    const png = encodeImage(
      x.subarray(i * perImage, (i + 1) * perImage),
      run.shape,
      request.size,
      model.manifest.image.valueRange,
    )
    const sha256 = await sha256Hex(png)
    run.timings.encodeMs += performance.now() - started
    const image = storedImage(request, i, sha256, png.byteLength)
    images.push(image)
    writes.add(image, png)
  }
  const stored = writes.stored()
  return { images, stored }
}
