/**
 * @module errors
 * One base error for the policy module, with typed subclasses. Every validation failure at the module's
 * boundary throws one of these (never a bare TypeError/RangeError), so callers can map `code` to an HTTP
 * error or a UI message without parsing text.
 */

/** Stable machine-readable codes carried by {@link PolicyError}. */
export type PolicyErrorCode =
  /** a tensor's length does not match the shape it is used with */
  | 'invalid_shape'
  /** a σ / raw time is not finite or outside [0, 1], or σ_dst > σ_src */
  | 'invalid_sigma'
  /** any other option out of range (K, N, eps, temperature, shift, counts, seeds …) */
  | 'invalid_option'
  /** a tensor holds a value the math cannot use (NaN, +∞, a pixel whose log-weights are all −∞) */
  | 'invalid_value'

/** Base class of every error thrown by `@piflow/policy`. */
export class PolicyError extends Error {
  override name = 'PolicyError'
  readonly code: PolicyErrorCode

  constructor(code: PolicyErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }

  /** Brand that survives duplicated bundles / realms where `instanceof` fails. */
  get isPolicyError(): true {
    return true
  }
}

/** A tensor length or latent shape is inconsistent. */
export class PolicyShapeError extends PolicyError {
  override name = 'PolicyShapeError'
  constructor(message: string) {
    super('invalid_shape', message)
  }
}

/** A noise level or raw time is not usable. */
export class PolicySigmaError extends PolicyError {
  override name = 'PolicySigmaError'
  constructor(message: string) {
    super('invalid_sigma', message)
  }
}

/** An option is out of its documented range. */
export class PolicyOptionError extends PolicyError {
  override name = 'PolicyOptionError'
  constructor(message: string) {
    super('invalid_option', message)
  }
}

/** A tensor contains values the math cannot use. */
export class PolicyValueError extends PolicyError {
  override name = 'PolicyValueError'
  constructor(message: string) {
    super('invalid_value', message)
  }
}

/** True for any error thrown by this module (by `instanceof` or by brand, across bundles). */
export const isPolicyError = (error: unknown): error is PolicyError =>
  error instanceof PolicyError ||
  (typeof error === 'object' && error !== null && (error as PolicyError).isPolicyError === true)
