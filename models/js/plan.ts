/**
 * @module plan
 * What a generation samples from, derived from the manifest alone: the latent shape, the seeded initial
 * noise and the sampling settings. The worker and the SDK's in-browser path both call these, so a seed
 * means the same image everywhere — there must be exactly one implementation of this contract.
 */
import { buildSchedule, type LatentShape, randn, type Schedule } from '@piflow/policy'
import { ManifestError } from './errors.ts'
import type { Manifest, NfeSettings } from './manifest.ts'

/**
 * The normalised parameters that determine a generation's images. The worker (which adds its cache
 * fields) and the SDK's in-browser path normalise a request to this, so the same input gives the same
 * image on both.
 */
export interface GenerationParams {
  model: string
  prompt: string
  nfe: number
  seed: number
  size: number
  guidance: number
  count: number
}

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

/** The sampler settings of one NFE: the manifest's entry plus the schedule built from it. */
export interface SamplingSettings {
  perNfe: NfeSettings
  schedule: Schedule
  eps: number
  temperature: NfeSettings['temperature']
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
  return { perNfe, schedule, eps: manifest.sampling.eps, temperature: perNfe.temperature }
}
