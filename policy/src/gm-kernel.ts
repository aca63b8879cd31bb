/**
 * @module gm-kernel
 * The JS kernel of the GM policy (gm.ts): the segment's data packed pixel-major, and the hot loop every
 * query and Euler substep runs. Why the layout: within a segment only the per-sample scalars ζ, D,
 * α = r_t/σ̃_t change between substeps. Regrouping the logit as `lw + (m·ν − ½ζ·|m|²)/D` and the
 * posterior mean as `(Σ_k w_k·m_k + var·ν)/D` (Σ w = 1) leaves per pixel one K×C dot product, a K-way
 * softmax and one K×C weighted sum. Everything constant in the segment (x0-space means, effective
 * log-weights, |m|²) is computed once at construction and packed pixel-major —
 * `[x_src(C) | k0: m(C), lw, |m|² | k1: …]` — so each substep streams the packed buffer exactly once,
 * cache-line friendly. Float64Array policies (the reference) and Float32Array ones where no wasm runs
 * use it; it computes in float64 whatever the storage type.
 */
import { PolicyShapeError, PolicyValueError } from './errors.ts'
import type { FloatArray } from './types.ts'
import { allocLike, MAX_ELEMENTS } from './validate.ts'

// Per-sample coefficients handed to the kernel, COEFS values per sample.
export const COEFS = 7
export const ALPHA = 0 // r_t / σ̃_t   (ν = α·x_t − β·x_src)
export const BETA = 1 // r_src / σ̃_src
export const HALF_ZETA = 2 // ½ζ
export const INV_D = 3 // 1 / D
export const VAR = 4 // var_x0
export const CX = 5 // out = cx·x_t + c0·x0_hat
export const C0 = 6

/** Throws unless every means_x0 and x_src value is finite (their squares' sum would not be). */
export function checkFinite(sum: number): void {
  if (!Number.isFinite(sum)) {
    throw new PolicyValueError('output.meansU or xSrc contains a non-finite value (or overflows)')
  }
}

/** The JS kernel's data: per pixel `[x_src(C) | k0: m(C), lw, |m|² | k1: …]` (module doc). */
export function packPixelMajor<T extends FloatArray>(
  meansU: T,
  xSrc: T,
  lwShifted: Float64Array,
  sigmaSrcs: Float64Array,
  B: number,
  K: number,
  C: number,
  HW: number,
  dims: string,
): T {
  const compStride = C + 2
  const pixStride = C + K * compStride
  if (B * HW * pixStride > MAX_ELEMENTS) {
    throw new PolicyShapeError(
      `GM policy of ${dims} needs ${B * HW * pixStride} packed values (max ${MAX_ELEMENTS})`,
    )
  }
  const packed = allocLike(xSrc, B * HW * pixStride)
  let finiteCheck = 0 // NaN/∞ anywhere in means or x_src propagates into this sum
  for (let b = 0; b < B; b++) {
    const s = sigmaSrcs[b]
    for (let p = 0; p < HW; p++) {
      const base = (b * HW + p) * pixStride
      for (let c = 0; c < C; c++) packed[base + c] = xSrc[(b * C + c) * HW + p]
      for (let k = 0; k < K; k++) {
        const o = base + C + k * compStride
        let sq = 0
        for (let c = 0; c < C; c++) {
          packed[o + c] = xSrc[(b * C + c) * HW + p] - s * meansU[((b * K + k) * C + c) * HW + p]
          // |m|² from the stored (possibly float32-rounded) value keeps the logit consistent with it
          const mr = packed[o + c]
          sq += mr * mr
        }
        packed[o + C] = lwShifted[(b * K + k) * HW + p]
        packed[o + C + 1] = sq
        finiteCheck += sq
      }
    }
  }
  checkFinite(finiteCheck)
  return packed
}

export interface Geometry {
  B: number
  K: number
  C: number
  HW: number
  pixStride: number
}

/**
 * The hot loop: for every pixel, ν = α·x_t − β·x_src, logits, softmax, x0_hat, and
 * out = cx·x_t + c0·x0_hat. `out` may alias `xT` (a pixel's x_t is read before it is written).
 * Allocates nothing; `weightsOut` (B,K,1,H,W) is only for inspection.
 */
export function gmKernel(
  packed: FloatArray,
  g: Geometry,
  xT: FloatArray,
  out: FloatArray,
  coefs: Float64Array,
  scratch: Float64Array,
  weightsOut: FloatArray | null,
): void {
  const { B, K, C, HW, pixStride } = g
  const compStride = C + 2
  // scratch: ν (C) | x_t (C) | Σ w·m (C) | logits (K)
  const XT = C
  const ACC = 2 * C
  const LOGIT = 3 * C
  for (let b = 0; b < B; b++) {
    const o = b * COEFS
    const alpha = coefs[o + ALPHA]
    const beta = coefs[o + BETA]
    const halfZeta = coefs[o + HALF_ZETA]
    const invD = coefs[o + INV_D]
    const variance = coefs[o + VAR]
    const cx = coefs[o + CX]
    const c0 = coefs[o + C0]
    const xOff = b * C * HW
    for (let p = 0; p < HW; p++) {
      const base = (b * HW + p) * pixStride
      for (let c = 0; c < C; c++) {
        const xt = xT[xOff + c * HW + p]
        scratch[XT + c] = xt
        scratch[c] = alpha * xt - beta * packed[base + c]
      }
      let max = Number.NEGATIVE_INFINITY
      let m = base + C
      for (let k = 0; k < K; k++) {
        let dot = 0
        for (let c = 0; c < C; c++) dot += packed[m + c] * scratch[c]
        const logit = packed[m + C] + (dot - halfZeta * packed[m + C + 1]) * invD
        scratch[LOGIT + k] = logit
        if (logit > max) max = logit
        m += compStride
      }
      let sum = 0
      for (let k = 0; k < K; k++) {
        const e = Math.exp(scratch[LOGIT + k] - max)
        scratch[LOGIT + k] = e
        sum += e
      }
      const inv = 1 / sum
      for (let c = 0; c < C; c++) scratch[ACC + c] = 0
      m = base + C
      for (let k = 0; k < K; k++) {
        const w = scratch[LOGIT + k] * inv
        if (weightsOut !== null) weightsOut[(b * K + k) * HW + p] = w
        if (w !== 0) for (let c = 0; c < C; c++) scratch[ACC + c] += w * packed[m + c]
        m += compStride
      }
      for (let c = 0; c < C; c++) {
        const x0 = (scratch[ACC + c] + variance * scratch[c]) * invD
        out[xOff + c * HW + p] = cx * scratch[XT + c] + c0 * x0
      }
    }
  }
}

/** True when `x` (B,C,H,W) holds exactly the packed x_src. */
export function sameAsSource(packed: FloatArray, g: Geometry, x: FloatArray): boolean {
  const { B, C, HW, pixStride } = g
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const xo = (b * C + c) * HW
      for (let p = 0; p < HW; p++) {
        if (x[xo + p] !== packed[(b * HW + p) * pixStride + c]) return false
      }
    }
  }
  return true
}
