/**
 * @module @piflow/models
 * Model manifests (schema + parser), the generation plan (latent shape, seeded noise, sampling
 * settings), the prompt tokenizer and latent → RGBA conversion.
 */

export type { ModelsErrorCode } from './errors.ts'
export { LatentError, ManifestError, ModelsError, TokenizerError } from './errors.ts'
export type { LatentDims, LatentToRgbaOptions } from './image.ts'
export { latentToRgba, MAX_OUTPUT_SIZE } from './image.ts'
export type { Manifest, ManifestFile, ManifestPolicy, NfeSettings, TensorSpec } from './manifest.ts'
export { manifestSchema, nfeSettings, parseManifest } from './manifest.ts'
export type { GenerationParams, SamplingSettings } from './plan.ts'
export { initialLatents, latentShape, samplingFor } from './plan.ts'
export type { Tokenizer, TokenizerSpec } from './tokenizer.ts'
export { createTokenizer, MAX_PROMPT_CHARS, splitWords, tokenize } from './tokenizer.ts'
