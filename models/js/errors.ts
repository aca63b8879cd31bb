/**
 * @module errors
 * One base error for `@piflow/models`, with typed subclasses, so callers map `code` to an HTTP error
 * without parsing messages.
 */

/** Stable machine-readable codes carried by {@link ModelsError}. */
export type ModelsErrorCode =
  /** manifest JSON does not match the schema or its cross-references */
  | 'invalid_manifest'
  /** tokenizer spec is malformed */
  | 'invalid_tokenizer'
  /** a prompt is too long to tokenize */
  | 'prompt_too_long'
  /** a latent buffer / shape / output size is unusable */
  | 'invalid_latent'

/** Base class of every error thrown by `@piflow/models`. */
export class ModelsError extends Error {
  override name = 'ModelsError'
  readonly code: ModelsErrorCode

  constructor(code: ModelsErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/** The manifest failed validation; `issues` lists every problem as `path: message`. */
export class ManifestError extends ModelsError {
  override name = 'ManifestError'
  readonly issues: readonly string[]

  constructor(issues: readonly string[]) {
    super('invalid_manifest', `invalid model manifest: ${issues.join('; ')}`)
    this.issues = issues
  }
}

/** The tokenizer spec is malformed, or a prompt exceeds the character limit. */
export class TokenizerError extends ModelsError {
  override name = 'TokenizerError'
}

/** A latent cannot be turned into pixels (length/shape mismatch, bad size). */
export class LatentError extends ModelsError {
  override name = 'LatentError'
  constructor(message: string) {
    super('invalid_latent', message)
  }
}
