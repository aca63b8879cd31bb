/**
 * @module gm-subspace
 * The subspace rollout of the GM policy (`startRollout` of gm.ts, JS kernel). Every Euler substep is
 * x ← cx·x + c0·x0_hat with x0_hat ∈ span{x_src, m_1…m_K}, so a rollout that starts at x_src stays in
 * that span: x_t = γ·x_src + Σ_k c_k·m_k with γ one scalar per sample and K coefficients per pixel.
 * In these coordinates m_j·ν = (αγ − β)·(m_j·x_src) + α·Σ_k G_jk·c_k with the per-pixel Gram matrix
 * G = [m_j·m_k], so a substep costs K² + O(K) per pixel instead of 2·K·C, and x is rebuilt once at the
 * end. Used when K ≤ C (pi-FLUX/pi-Qwen: K = 8, C = 16); the direct kernel serves K > C (ImageNet K = 32,
 * C = 4) and queries at arbitrary x.
 */
import type { Geometry } from './gm-kernel.ts'
import type { FloatArray, PolicyRollout } from './types.ts'

/**
 * Per pixel `[lw (K) | m_j·x_src (K) | G (K×K, row-major)]` for the subspace rollout; the dot products
 * are accumulated in float64 and G is filled symmetrically.
 */
export function buildGram<T extends FloatArray>(packed: FloatArray, g: Geometry, out: T): T {
  const { B, K, C, HW, pixStride } = g
  const compStride = C + 2
  const stride = K * (K + 2)
  for (let q = 0; q < B * HW; q++) {
    const base = q * pixStride
    const o = q * stride
    for (let j = 0; j < K; j++) {
      const mj = base + C + j * compStride
      out[o + j] = packed[mj + C]
      let dx = 0
      for (let c = 0; c < C; c++) dx += packed[mj + c] * packed[base + c]
      out[o + K + j] = dx
      for (let k = 0; k <= j; k++) {
        const mk = base + C + k * compStride
        let dot = 0
        for (let c = 0; c < C; c++) dot += packed[mj + c] * packed[mk + c]
        out[o + 2 * K + j * K + k] = dot
        out[o + 2 * K + k * K + j] = dot
      }
    }
  }
  return out
}

export interface SubspaceContext<T extends FloatArray> {
  eps: number
  sigmaSrc: Float64Array
  varX0: Float64Array
  checkSigmas: (sigmaT: ArrayLike<number>, sigmaNext: ArrayLike<number>) => void
  checkOut: (x: T) => void
}

/** The rollout state x_t = γ·x_src + Σ_k c_k·m_k and its Euler substep (module doc). */
export function createSubspaceRollout<T extends FloatArray>(
  packed: FloatArray,
  gram: FloatArray,
  g: Geometry,
  ctx: SubspaceContext<T>,
): PolicyRollout<T> {
  const { B, K, C, HW, pixStride } = g
  const gamma = new Float64Array(B).fill(1)
  const coef = new Float64Array(B * HW * K)
  const logits = new Float64Array(K)
  const scalars = new Float64Array(SUB_COEFS) // per-substep scalars, reused (no allocation per substep)
  return {
    step(sigmaT, sigmaNext) {
      ctx.checkSigmas(sigmaT, sigmaNext)
      for (let b = 0; b < B; b++) {
        if (sigmaNext[b] === sigmaT[b]) continue // dσ = 0: the Euler update is the identity
        const st = Math.max(sigmaT[b], ctx.eps)
        const ss = Math.max(ctx.sigmaSrc[b], ctx.eps)
        const rt = (1 - st) / st
        const rs = (1 - ss) / ss
        const zeta = rt * rt - rs * rs
        const invD = 1 / Math.max(1 + ctx.varX0[b] * zeta, ctx.eps)
        const alpha = rt / st
        const g0 = alpha * gamma[b] - rs / ss // coefficient of x_src in ν
        const ratio = (sigmaNext[b] - sigmaT[b]) / st
        const cx = 1 + ratio
        const c0 = -ratio
        // logit_j = lw_j + (g0·mx_j + α·(G·c)_j − ½ζ·G_jj)/D;  c' = keep·c + (c0/D)·w
        scalars[SUB_MX] = g0 * invD
        scalars[SUB_GC] = alpha * invD
        scalars[SUB_DIAG] = 0.5 * zeta * invD
        scalars[SUB_KEEP] = cx + c0 * invD * ctx.varX0[b] * alpha
        scalars[SUB_WEIGHT] = c0 * invD
        subspaceKernel(gram, coef, logits, b * HW, HW, K, scalars)
        gamma[b] = cx * gamma[b] + c0 * ctx.varX0[b] * g0 * invD
      }
    },
    write(x) {
      ctx.checkOut(x)
      const compStride = C + 2
      for (let b = 0; b < B; b++) {
        for (let p = 0; p < HW; p++) {
          const base = (b * HW + p) * pixStride
          const co = (b * HW + p) * K
          for (let c = 0; c < C; c++) {
            let v = gamma[b] * packed[base + c]
            for (let k = 0; k < K; k++) v += coef[co + k] * packed[base + C + k * compStride + c]
            x[(b * C + c) * HW + p] = v
          }
        }
      }
      return x
    },
  }
}

// Per-substep scalars of `subspaceKernel` (one sample), slots of a reused Float64Array.
const SUB_COEFS = 5
const SUB_MX = 0 // multiplies m_j·x_src
const SUB_GC = 1 // multiplies (G·c)_j
const SUB_DIAG = 2 // multiplies G_jj
const SUB_KEEP = 3 // c_k' = keep·c_k + weight·w_k
const SUB_WEIGHT = 4

/** One substep of the subspace rollout for the pixels of one sample (K² + O(K) per pixel). */
function subspaceKernel(
  gram: FloatArray,
  coef: Float64Array,
  logits: Float64Array,
  pixel0: number,
  HW: number,
  K: number,
  scalars: Float64Array,
): void {
  const mx = scalars[SUB_MX]
  const gc = scalars[SUB_GC]
  const diag = scalars[SUB_DIAG]
  const keep = scalars[SUB_KEEP]
  const weight = scalars[SUB_WEIGHT]
  const stride = K * (K + 2)
  for (let p = pixel0; p < pixel0 + HW; p++) {
    const o = p * stride
    const co = p * K
    const g = o + 2 * K // G, row-major
    let max = Number.NEGATIVE_INFINITY
    // (G·c)_j four rows at a time so each c_k is loaded once per four products (register blocking)
    let j = 0
    for (; j + 4 <= K; j += 4) {
      const r = g + j * K
      let s0 = 0
      let s1 = 0
      let s2 = 0
      let s3 = 0
      for (let i = 0; i < K; i++) {
        const c = coef[co + i]
        s0 += gram[r + i] * c
        s1 += gram[r + K + i] * c
        s2 += gram[r + 2 * K + i] * c
        s3 += gram[r + 3 * K + i] * c
      }
      const l0 = gram[o + j] + mx * gram[o + K + j] + gc * s0 - diag * gram[r + j]
      const l1 = gram[o + j + 1] + mx * gram[o + K + j + 1] + gc * s1 - diag * gram[r + K + j + 1]
      const l2 =
        gram[o + j + 2] + mx * gram[o + K + j + 2] + gc * s2 - diag * gram[r + 2 * K + j + 2]
      const l3 =
        gram[o + j + 3] + mx * gram[o + K + j + 3] + gc * s3 - diag * gram[r + 3 * K + j + 3]
      logits[j] = l0
      logits[j + 1] = l1
      logits[j + 2] = l2
      logits[j + 3] = l3
      max = Math.max(max, l0, l1, l2, l3)
    }
    for (; j < K; j++) {
      const r = g + j * K
      let s0 = 0
      for (let i = 0; i < K; i++) s0 += gram[r + i] * coef[co + i]
      const l = gram[o + j] + mx * gram[o + K + j] + gc * s0 - diag * gram[r + j]
      logits[j] = l
      if (l > max) max = l
    }
    let sum = 0
    for (j = 0; j < K; j++) {
      const e = Math.exp(logits[j] - max)
      logits[j] = e
      sum += e
    }
    const w = weight / sum
    for (let i = 0; i < K; i++) coef[co + i] = keep * coef[co + i] + w * logits[i]
  }
}
