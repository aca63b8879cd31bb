/**
 * @module noise
 * Seeded standard normals that are bit-identical on every IEEE-754 runtime (policy/NOISE.md):
 * Philox4x32-10 exactly as Random123, then a Box–Muller transform evaluated with +, −, ×, ÷ and sqrt
 * only (no Math.log/Math.cos, whose last bits differ between engines). Normal j of seed s lives in
 * Philox block ⌊j/4⌋, lane j mod 4, so any slice of the stream is generated independently.
 */
import { PolicyOptionError } from './errors.ts'
import type { FloatArray } from './types.ts'

const PHILOX_M0 = 0xd2511f53
const PHILOX_M1 = 0xcd9e8d57
const PHILOX_W0 = 0x9e3779b9
const PHILOX_W1 = 0xbb67ae85

/** High 32 bits of the 64-bit product of two uint32 values, exactly (all partial products < 2^53). */
function mulhi32(a: number, b: number): number {
  const low = a * (b & 0xffff) // < 2^48
  const high = a * (b >>> 16) // < 2^48
  return Math.floor((high + Math.floor(low / 65536)) / 65536)
}

/**
 * Philox4x32-10 block function (Random123 `philox4x32_R(10, ctr, key)`), in place on `ctr`.
 *
 * @param ctr four uint32 counter words, overwritten with the four output words
 * @param key0 first key word
 * @param key1 second key word
 */
export function philox4x32(ctr: Uint32Array, key0: number, key1: number): Uint32Array {
  let c0 = ctr[0]
  let c1 = ctr[1]
  let c2 = ctr[2]
  let c3 = ctr[3]
  let k0 = key0 >>> 0
  let k1 = key1 >>> 0
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0
      k1 = (k1 + PHILOX_W1) >>> 0
    }
    const hi0 = mulhi32(PHILOX_M0, c0)
    const lo0 = Math.imul(PHILOX_M0, c0) >>> 0
    const hi1 = mulhi32(PHILOX_M1, c2)
    const lo1 = Math.imul(PHILOX_M1, c2) >>> 0
    c0 = (hi1 ^ c1 ^ k0) >>> 0
    c1 = lo1
    c2 = (hi0 ^ c3 ^ k1) >>> 0
    c3 = lo0
  }
  ctr[0] = c0
  ctr[1] = c1
  ctr[2] = c2
  ctr[3] = c3
  return ctr
}

const TWO_POW_32 = 4294967296
// Spelled out (not Math.SQRT2 / Math.LN2) because NOISE.md fixes these exact float64 values.
// biome-ignore lint/suspicious/noApproximativeNumericConstant: the literal is the specification
const SQRT2 = 1.4142135623730951
// biome-ignore lint/suspicious/noApproximativeNumericConstant: the literal is the specification
const LN2 = 0.6931471805599453
const HALF_PI = 1.5707963267948966

/**
 * ln((a + 0.5)·2⁻³²) for a uint32 `a`, NOISE.md §3: t = 2a + 1 = m·2^e exactly with m ∈ [√½, √2],
 * ln = (e − 33)·LN2 + 2s·Σ_{k=0}^{11} s^{2k}/(2k+1), s = (m − 1)/(m + 1), Horner from k = 11 down.
 */
export function lnUniform(a: number): number {
  const t = 2 * a + 1
  let e = t >= TWO_POW_32 ? 32 : 31 - Math.clz32(t)
  let m = t / 2 ** e
  if (m > SQRT2) {
    m /= 2
    e += 1
  }
  const s = (m - 1) / (m + 1)
  const z = s * s
  let p = 1 / 23
  for (let k = 10; k >= 0; k--) p = p * z + 1 / (2 * k + 1)
  return (e - 33) * LN2 + 2 * s * p
}

/** sin φ and cos φ for φ ∈ [0, π/4] by nested Taylor series (NOISE.md §3), into out[0], out[1]. */
function sinCosSmall(phi: number, out: Float64Array): void {
  const z = phi * phi
  let s = 1
  let c = 1
  for (let k = 9; k >= 1; k--) {
    s = 1 - (z / (2 * k * (2 * k + 1))) * s
    c = 1 - (z / ((2 * k - 1) * (2 * k))) * c
  }
  out[0] = phi * s
  out[1] = c
}

/**
 * Two standard normals from two uint32 words (Box–Muller, NOISE.md §3), into out[0] (cos branch)
 * and out[1] (sin branch). Exported for the cross-language vectors.
 */
export function boxMuller(a: number, b: number, out: Float64Array): Float64Array {
  const radius = Math.sqrt(-2 * lnUniform(a))
  const quadrant = b >>> 30
  const f = ((b & 0x3fffffff) + 0.5) / 1073741824 // ∈ (0, 1), exact; never 0.5
  if (f < 0.5) {
    sinCosSmall(f * HALF_PI, out)
  } else {
    sinCosSmall((1 - f) * HALF_PI, out)
    const s = out[0]
    out[0] = out[1]
    out[1] = s
  }
  const sinPhi = out[0]
  const cosPhi = out[1]
  // θ = (quadrant + f)·π/2: rotate by quadrant·π/2 with exact sign flips
  let sinT: number
  let cosT: number
  if (quadrant === 0) {
    sinT = sinPhi
    cosT = cosPhi
  } else if (quadrant === 1) {
    sinT = cosPhi
    cosT = -sinPhi
  } else if (quadrant === 2) {
    sinT = -sinPhi
    cosT = -cosPhi
  } else {
    sinT = -cosPhi
    cosT = sinPhi
  }
  out[0] = radius * cosT
  out[1] = radius * sinT
  return out
}

/** Largest valid `offset + out.length`: counters stay exact integers. */
const MAX_INDEX = 2 ** 53

/**
 * Fills `out` with standard normals number `offset … offset + out.length − 1` of the stream `seed`
 * (Philox4x32-10 with key (seed, 0) and counter (block lo, block hi, 0, 0), block = ⌊j/4⌋).
 * Float64Array receives the exact float64 values, Float32Array their round-to-nearest float32.
 *
 * Image i of a request with seed s uses `randn(x_i, (s + i) mod 2^32)`.
 *
 * @example
 * ```ts
 * const x = randn(new Float32Array(4 * 32 * 32), 42)
 * ```
 * @throws {PolicyError} unless seed is an integer in [0, 2^32) and offset a non-negative integer
 */
export function randn<T extends FloatArray>(out: T, seed: number, offset = 0): T {
  if (!(out instanceof Float32Array || out instanceof Float64Array)) {
    throw new PolicyOptionError('randn: out must be a Float32Array or Float64Array')
  }
  if (!Number.isInteger(seed) || seed < 0 || seed >= TWO_POW_32) {
    throw new PolicyOptionError(`randn: seed must be an integer in [0, 2^32), got ${seed}`)
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + out.length > MAX_INDEX) {
    throw new PolicyOptionError(
      `randn: offset must be a non-negative integer below 2^53, got ${offset}`,
    )
  }
  const ctr = new Uint32Array(4)
  const pair = new Float64Array(2)
  const lanes = new Float64Array(4)
  const end = offset + out.length
  let j = offset
  while (j < end) {
    const block = Math.floor(j / 4)
    ctr[0] = block % TWO_POW_32
    ctr[1] = Math.floor(block / TWO_POW_32)
    ctr[2] = 0
    ctr[3] = 0
    philox4x32(ctr, seed, 0)
    boxMuller(ctr[0], ctr[1], pair)
    lanes[0] = pair[0]
    lanes[1] = pair[1]
    boxMuller(ctr[2], ctr[3], pair)
    lanes[2] = pair[0]
    lanes[3] = pair[1]
    for (let lane = j - block * 4; lane < 4 && j < end; lane++, j++) out[j - offset] = lanes[lane]
  }
  return out
}
