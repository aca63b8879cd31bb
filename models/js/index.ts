/**
 * @module @piflow/models
 * Model manifests (schema + parser), the prompt tokenizer and latent → RGBA conversion. What a
 * generation does with them (plan, inputs, outputs, wire format) is `@piflow/protocol`.
 */

export type { ModelsErrorCode } from './errors.ts'
export { LatentError, ManifestError, ModelsError, TokenizerError } from './errors.ts'
export type { LatentDims, LatentToRgbaOptions } from './image.ts'
export { latentToRgba, MAX_OUTPUT_SIZE } from './image.ts'
export type { Manifest, ManifestFile, ManifestPolicy, NfeSettings, TensorSpec } from './manifest.ts'
export { MAX_NFE, manifestSchema, nfeSettings, parseManifest } from './manifest.ts'
export type { Tokenizer, TokenizerSpec } from './tokenizer.ts'
export { createTokenizer, MAX_PROMPT_CHARS, splitWords, tokenize } from './tokenizer.ts'
