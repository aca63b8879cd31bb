/**
 * @module image
 * Latent → pixels. For piflow-emoji the latent *is* the image: (B, 3, H, W) in [-1, 1].
 */
import { LatentError } from './errors.ts'

/** Shape of a latent batch; `batch` defaults to 1. */
export interface LatentDims {
  batch?: number
  channels: number
  height: number
  width: number
}

export interface LatentToRgbaOptions {
  /** Which image of the batch. @default 0 */
  index?: number
  /** Value range mapped to 0…255. @default [-1, 1] */
  valueRange?: readonly [number, number]
}

/** Output sizes above this are rejected before allocating. */
export const MAX_OUTPUT_SIZE = 4096

/**
 * Converts one image of a (B, C, H, W) latent to RGBA bytes at `size`×`size` (nearest-neighbour
 * resampling, so integer multiples of the native size are exact upscales). C = 3 is RGB, C = 1 grey;
 * alpha is 255.
 * @throws {LatentError} on a length/shape mismatch, an unsupported channel count or a bad size.
 */
export function latentToRgba(
  x: ArrayLike<number>,
  shape: LatentDims,
  size: number,
  options?: LatentToRgbaOptions,
): Uint8ClampedArray {
  const { channels: c, height: h, width: w } = shape
  const batch = shape.batch ?? 1
  const index = options?.index ?? 0
  const [lo, hi] = options?.valueRange ?? [-1, 1]
  for (const [name, v] of Object.entries({ batch, channels: c, height: h, width: w })) {
    if (!Number.isInteger(v) || v <= 0) throw new LatentError(`${name} must be a positive integer`)
  }
  if (c !== 1 && c !== 3) throw new LatentError(`cannot render ${c} channels (need 1 or 3)`)
  if (x.length !== batch * c * h * w) {
    throw new LatentError(`latent has ${x.length} values, shape needs ${batch * c * h * w}`)
  }
  if (!Number.isInteger(index) || index < 0 || index >= batch) {
    throw new LatentError(`index ${index} outside batch of ${batch}`)
  }
  if (!Number.isInteger(size) || size <= 0 || size > MAX_OUTPUT_SIZE) {
    throw new LatentError(`size must be an integer in 1…${MAX_OUTPUT_SIZE}`)
  }
  if (!(hi > lo)) throw new LatentError('valueRange must be increasing')
  const scale = 255 / (hi - lo)
  const plane = h * w
  const base = index * c * plane
  const out = new Uint8ClampedArray(size * size * 4)
  for (let oy = 0; oy < size; oy++) {
    const sy = Math.floor((oy * h) / size)
    for (let ox = 0; ox < size; ox++) {
      const src = base + sy * w + Math.floor((ox * w) / size)
      const o = (oy * size + ox) * 4
      for (let ch = 0; ch < 3; ch++) {
        // Uint8ClampedArray rounds half to even and clamps, which is exactly what we want
        out[o + ch] = (x[src + (c === 3 ? ch : 0) * plane] - lo) * scale
      }
      out[o + 3] = 255
    }
  }
  return out
}
