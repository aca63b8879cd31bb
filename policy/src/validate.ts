/**
 * @module validate
 * Boundary checks shared by the policy constructors, rollout and schedule. They run once per call on
 * O(1)/O(B) data, never inside substep loops.
 */
import { PolicyOptionError, PolicyShapeError, PolicySigmaError } from './errors.ts'
import type { FloatArray, LatentShape } from './types.ts'

/** Largest element count accepted for one tensor: typed arrays beyond 2^31 are not portable. */
export const MAX_ELEMENTS = 2 ** 31 - 1

/** Throws unless `value` is an integer in [min, max]. */
export function checkInt(name: string, value: unknown, min = 1, max = MAX_ELEMENTS): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PolicyOptionError(
      `${name} must be an integer in [${min}, ${max}], got ${String(value)}`,
    )
  }
  return value
}

/** Throws unless `value` is a finite number in [min, max] (exclusive lower bound with `minExclusive`). */
export function checkNumber(
  name: string,
  value: unknown,
  min = Number.NEGATIVE_INFINITY,
  max = Number.POSITIVE_INFINITY,
  minExclusive = false,
): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value > max ||
    (minExclusive ? value <= min : value < min)
  ) {
    const lo = minExclusive ? `(${min}` : `[${min}`
    throw new PolicyOptionError(
      `${name} must be a finite number in ${lo}, ${max}], got ${String(value)}`,
    )
  }
  return value
}

/** Throws unless `value` is a finite noise level / raw time in [0, 1]. */
export function checkSigma(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new PolicySigmaError(`${name} must be a finite number in [0, 1], got ${String(value)}`)
  }
  return value
}

/** Validates a per-sample σ vector of length B; returns it as a fresh Float64Array. */
export function checkSigmas(name: string, values: ArrayLike<number>, batch: number): Float64Array {
  if (values == null || typeof values.length !== 'number' || values.length !== batch) {
    throw new PolicyShapeError(
      `${name} must have one value per sample (${batch}), got length ${values?.length}`,
    )
  }
  const out = new Float64Array(batch)
  for (let b = 0; b < batch; b++) out[b] = checkSigma(`${name}[${b}]`, values[b])
  return out
}

/** Same as {@link checkSigmas} but without copying (for per-substep calls on trusted lengths). */
export function checkSigmasInPlace(name: string, values: ArrayLike<number>, batch: number): void {
  if (values == null || values.length !== batch) {
    throw new PolicyShapeError(
      `${name} must have one value per sample (${batch}), got length ${values?.length}`,
    )
  }
  for (let b = 0; b < batch; b++) {
    const s = values[b]
    if (!(s >= 0 && s <= 1)) {
      throw new PolicySigmaError(
        `${name}[${b}] must be a finite number in [0, 1], got ${String(s)}`,
      )
    }
  }
}

/** Validates a latent shape and returns its element count B·C·H·W. */
export function checkShape(shape: LatentShape): number {
  if (shape == null || typeof shape !== 'object') {
    throw new PolicyShapeError('shape must be an object {batch, channels, height, width}')
  }
  const batch = checkShapeDim('shape.batch', shape.batch)
  const channels = checkShapeDim('shape.channels', shape.channels)
  const height = checkShapeDim('shape.height', shape.height)
  const width = checkShapeDim('shape.width', shape.width)
  const count = batch * channels * height * width
  if (count > MAX_ELEMENTS)
    throw new PolicyShapeError(`shape has ${count} elements (max ${MAX_ELEMENTS})`)
  return count
}

function checkShapeDim(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_ELEMENTS) {
    throw new PolicyShapeError(`${name} must be a positive integer, got ${String(value)}`)
  }
  return value
}

/** Throws unless `array` is a Float32Array/Float64Array of exactly `length` elements. */
export function checkTensor(
  name: string,
  array: unknown,
  length: number,
  dims: string,
): FloatArray {
  if (!(array instanceof Float32Array || array instanceof Float64Array)) {
    throw new PolicyShapeError(`${name} must be a Float32Array or Float64Array ${dims}`)
  }
  if (array.length !== length) {
    throw new PolicyShapeError(`${name} must have ${length} elements ${dims}, got ${array.length}`)
  }
  return array
}

/** A new zeroed typed array of the same element type as `like`. */
export function allocLike<T extends FloatArray>(like: T, length: number): T {
  return (like instanceof Float32Array ? new Float32Array(length) : new Float64Array(length)) as T
}

/** Round half to even (golden §2: `round()` means banker's rounding, as in NumPy/PyTorch). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x)
  const d = x - f
  if (d > 0.5) return f + 1
  if (d < 0.5) return f
  return f % 2 === 0 ? f : f + 1
}
