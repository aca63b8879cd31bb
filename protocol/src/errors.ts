/**
 * @module errors
 * One base error for `@piflow/protocol`, with a stable `code`, so each part maps it onto its own error
 * type (the worker's ApiError, the backend's BackendError, the SDK's ValidationError and
 * LocalInferenceError) without parsing messages.
 */

/** Stable codes of {@link ProtocolError}. */
export type ProtocolErrorCode =
  /** the request fails the generation contract; `fields` says which fields and why */
  | 'validation_failed'
  /** a request body is not valid safetensors */
  | 'malformed_safetensors'
  /** step metadata missing, not a number or out of range */
  | 'invalid_metadata'
  /** a forward or step answer does not hold the tensors the manifest implies */
  | 'bad_output'

/** Base class of every error thrown by `@piflow/protocol`. */
export class ProtocolError extends Error {
  override name = 'ProtocolError'
  readonly code: ProtocolErrorCode
  /** The request field, metadata key or tensor to blame, when there is one. */
  readonly field: string | undefined

  constructor(code: ProtocolErrorCode, message: string, field?: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
    this.field = field
  }
}

/** One invalid field of a generation request. */
export interface FieldError {
  path: string
  message: string
}

/** The request fails the generation contract; every failing field is listed. */
export class RequestValidationError extends ProtocolError {
  override name = 'RequestValidationError'
  readonly fields: readonly FieldError[]

  constructor(fields: readonly FieldError[]) {
    super(
      'validation_failed',
      `Invalid request: ${fields.map((f) => `${f.path}: ${f.message}`).join('; ')}`,
    )
    this.fields = fields
  }
}
