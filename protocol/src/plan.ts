/**
 * @module plan
 * What a generation samples from, derived from the manifest alone: the latent shape, the seeded initial
 * noise, the sampling settings of an NFE count and the segment each NFE step integrates. The worker, the
 * backend's `/step` and the SDK's in-browser path all use these, so a seed means the same image on every
 * path — there is exactly one implementation of this contract.
 */
import { type Manifest, ManifestError, type NfeSettings } from '@piflow/models'
import {
  buildSchedule,
  type DxSegmentOptions,
  type LatentShape,
  randn,
  type Schedule,
  type SegmentSpec,
  segmentTemperature,
} from '@piflow/policy'

/** Shape of a batch of `count` latents of this model. */
export function latentShape(manifest: Manifest, count: number): LatentShape {
  const { channels, height, width } = manifest.latent
  return { batch: count, channels, height, width }
}

/**
 * Initial noise of a request: image i of a request with seed s uses randn(x_i, (s + i) mod 2^32), so
 * image i is the same whatever `count` it was generated with.
 */
export function initialLatents(manifest: Manifest, seed: number, count: number): Float32Array {
  const { channels, height, width } = manifest.latent
  const perImage = channels * height * width
  const xInit = new Float32Array(count * perImage)
  for (let i = 0; i < count; i++) {
    randn(xInit.subarray(i * perImage, (i + 1) * perImage), (seed + i) >>> 0)
  }
  return xInit
}

/** The DX policy parameters of a DX model (undefined for GM models): every segment uses them. */
export function dxSegmentOptions(manifest: Manifest): DxSegmentOptions | undefined {
  const { policy } = manifest
  if (policy.type !== 'dx') return undefined
  return { segmentSize: policy.segmentSize, shift: policy.shift, mode: policy.mode }
}

/**
 * The sampler settings of one NFE count: the manifest's entry plus the schedule built from it. Its
 * `schedule`, `eps`, `temperature` and `dx` are what `sample()` of `@piflow/policy` takes.
 */
export interface SamplingSettings {
  perNfe: NfeSettings
  schedule: Schedule
  eps: number
  temperature: NfeSettings['temperature']
  /** DX models only */
  dx?: DxSegmentOptions
}

/**
 * Schedule and sampler options for `nfe` (already validated against `sampling.nfeOptions`).
 * @throws {ManifestError} when the manifest has no `sampling.perNfe` entry for `nfe`.
 */
export function samplingFor(manifest: Manifest, nfe: number): SamplingSettings {
  const perNfe = manifest.sampling.perNfe[String(nfe)]
  if (!perNfe) throw new ManifestError([`sampling.perNfe: no settings for nfe ${nfe}`])
  const schedule = buildSchedule({
    nfe,
    shift: perNfe.shift,
    finalStepSizeScale: perNfe.finalStepSizeScale,
    totalSubsteps: perNfe.totalSubsteps,
  })
  const dx = dxSegmentOptions(manifest)
  return {
    perNfe,
    schedule,
    eps: manifest.sampling.eps,
    temperature: perNfe.temperature,
    ...(dx ? { dx } : {}),
  }
}

/**
 * The segment NFE step `k` integrates, as `sample()` builds it: what the backend's `/step` receives
 * (step metadata, wire.ts) when the rollout does not run where the sampler does.
 */
export function stepSegment(
  sampling: SamplingSettings,
  shape: LatentShape,
  k: number,
): SegmentSpec {
  const { schedule } = sampling
  const step = schedule.steps[k]!
  return {
    shape,
    sigmaSrc: step.sigmaSrc,
    sigmaDst: step.sigmaDst,
    shift: schedule.shiftUsed,
    totalSubsteps: schedule.totalSubsteps,
    eps: sampling.eps,
    temperature: segmentTemperature(sampling.temperature, schedule, k),
    ...(sampling.dx ? { dx: sampling.dx } : {}),
  }
}
