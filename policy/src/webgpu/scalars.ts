/**
 * @module webgpu/scalars
 * Host-side tables of per-sample and per-substep scalars for the WGSL kernels. They are computed in
 * float64 (JS numbers) exactly like the CPU reference and rounded to float32 once, so the GPU never
 * evaluates warp/unwarp or the grid index in single precision (a floor() there could pick a different
 * DX node than the reference near a node boundary).
 */

import { PolicyValueError } from '../errors.ts'
import { effectiveDropoutMask } from '../gm.ts'
import { substepCount } from '../rollout.ts'
import { unwarp, warp } from '../shift.ts'
import { DROPPED_LOGWEIGHT } from './common.wgsl.ts'

/**
 * The σ at which each Euler substep evaluates the policy, per (substep, sample), and the factor that
 * turns x − x0_hat into the state increment: (σ_next − σ_t)/σ̃_t for a rollout substep, 1/σ̃_t for a
 * plain velocity query (then the "increment" is u itself).
 */
export interface QueryPlan {
  /** number of substeps (1 for a velocity query) */
  count: number
  batch: number
  /** σ_t per (substep, sample), index s·B + b */
  sigmaT: Float64Array
  /** step factor per (substep, sample), index s·B + b */
  step: Float64Array
}

/** Plan for a rollout through `sigmas` (n + 1 values, the same for every sample). */
export function rolloutPlan(sigmas: Float64Array, batch: number, eps: number): QueryPlan {
  const count = sigmas.length - 1
  const sigmaT = new Float64Array(count * batch)
  const step = new Float64Array(count * batch)
  for (let s = 0; s < count; s++) {
    const sigma = sigmas[s]
    const factor = (sigmas[s + 1] - sigma) / Math.max(sigma, eps)
    for (let b = 0; b < batch; b++) {
      sigmaT[s * batch + b] = sigma
      step[s * batch + b] = factor
    }
  }
  return { count, batch, sigmaT, step }
}

/** Plan for one velocity query with one σ_t per sample. */
export function velocityPlan(sigmaT: ArrayLike<number>, eps: number): QueryPlan {
  const batch = sigmaT.length
  const plan = { count: 1, batch, sigmaT: new Float64Array(batch), step: new Float64Array(batch) }
  for (let b = 0; b < batch; b++) {
    plan.sigmaT[b] = sigmaT[b]
    plan.step[b] = 1 / Math.max(sigmaT[b], eps)
  }
  return plan
}

/** r = (1 − σ̃)/σ̃ with σ̃ = max(σ, eps) (golden §3 gm_velocity step 4). */
const snr = (sigma: number, eps: number): number => {
  const s = Math.max(sigma, eps)
  return (1 - s) / s
}

/**
 * GM scalars (layout documented in gm.wgsl.ts): per sample `(σ_src, r_src/σ̃_src, σ_src²·T', 0)`,
 * then per (substep, sample) `(r_t/σ̃_t, r_t² − r_src², step, 0)`.
 */
export function gmScalars(
  sigmaSrc: ArrayLike<number>,
  plan: QueryPlan,
  eps: number,
  temperature: number,
): Float32Array {
  const { batch, count } = plan
  const out = new Float32Array((batch + count * batch) * 4)
  const rSrc = new Float64Array(batch)
  // Temperature T < 1 also scales var_x0 (golden §3 gm_velocity step 3).
  const varFactor = Math.min(temperature, 1)
  for (let b = 0; b < batch; b++) {
    const sigma = sigmaSrc[b]
    rSrc[b] = snr(sigma, eps)
    out.set([sigma, rSrc[b] / Math.max(sigma, eps), sigma * sigma * varFactor, 0], b * 4)
  }
  for (let i = 0; i < count * batch; i++) {
    const b = i % batch
    const sigma = plan.sigmaT[i]
    const r = snr(sigma, eps)
    out.set([r / Math.max(sigma, eps), r * r - rSrc[b] * rSrc[b], plan.step[i], 0], (batch + i) * 4)
  }
  return out
}

/** The DX policy's fixed parameters (golden §3 dx_velocity). */
export interface DxScalarOptions {
  n: number
  segmentSize: number
  shift: number
  mode: 'grid' | 'polynomial'
  eps: number
}

/**
 * DX scalars (layout documented in dx.wgsl.ts): per sample `(σ_src, 0, 0, 0)`, then per
 * (substep, sample) `(step, a, wa, wb)`.
 */
export function dxScalars(
  sigmaSrc: ArrayLike<number>,
  plan: QueryPlan,
  { n, segmentSize, shift, mode, eps }: DxScalarOptions,
): Float32Array {
  const { batch, count } = plan
  const out = new Float32Array((batch + count * batch) * 4)
  const rawSrc = new Float64Array(batch)
  const rawDst = new Float64Array(batch)
  const span = new Float64Array(batch)
  for (let b = 0; b < batch; b++) {
    out[b * 4] = sigmaSrc[b]
    rawSrc[b] = unwarp(sigmaSrc[b], shift)
    rawDst[b] = Math.max(rawSrc[b] - segmentSize, 0)
    span[b] = Math.max(rawSrc[b] - rawDst[b], eps)
  }
  for (let i = 0; i < count * batch; i++) {
    const b = i % batch
    const raw = unwarp(plan.sigmaT[i], shift)
    const o = (batch + i) * 4
    out[o] = plan.step[i]
    if (mode === 'polynomial') {
      out[o + 1] = rawSrc[b] - raw
      continue
    }
    if (n === 1) {
      out.set([0, 1, 0], o + 1)
      continue
    }
    const q = Math.min(Math.max((raw - rawDst[b]) / span[b], 0), 1) * (n - 1)
    const index = Math.min(Math.max(Math.floor(q), 0), n - 2)
    out.set([index, index + 1 - q, q - index], o + 1)
  }
  return out
}

/**
 * σ at the start of every substep plus the final σ (n + 1 values, first = σ_src), as in golden §3
 * `rollout`: n = max(round((τ_src − τ_dst)·totalSubsteps), 1) uniform steps in raw time.
 */
export function substepSigmas(
  sigmaSrc: number,
  sigmaDst: number,
  shift: number,
  totalSubsteps: number,
): Float64Array {
  const rawSrc = unwarp(sigmaSrc, shift)
  const rawDst = unwarp(sigmaDst, shift)
  const n = substepCount(rawSrc, rawDst, totalSubsteps)
  const h = (rawSrc - rawDst) / n
  const sigmas = new Float64Array(n + 1)
  sigmas[0] = sigmaSrc
  let raw = rawSrc
  for (let s = 1; s <= n; s++) {
    raw = Math.max(raw - h, 0)
    sigmas[s] = warp(raw, shift)
  }
  return sigmas
}

/**
 * Log-weights as the kernels want them: dropped components (golden §3 rule: a row whose K entries are
 * all true is ignored) and −∞ inputs become the finite DROPPED marker, since WGSL has no reliable −∞.
 */
export function logweightsForGpu(
  logweights: Float32Array,
  dropoutMask: ArrayLike<boolean> | undefined,
  B: number,
  K: number,
  P: number,
): Float32Array {
  const mask = effectiveDropoutMask(dropoutMask, B, K)
  const out = logweights.slice()
  const kept = new Uint32Array(P)
  for (let b = 0; b < B; b++) {
    kept.fill(0)
    for (let k = 0; k < K; k++) {
      const drop = mask != null && mask[b * K + k] === 1
      for (let p = 0; p < P; p++) {
        const i = (b * K + k) * P + p
        if (Number.isNaN(out[i]) || out[i] === Infinity) {
          throw new PolicyValueError(`output.logweights[${i}] is ${out[i]}`)
        }
        if (drop || out[i] === -Infinity) out[i] = DROPPED_LOGWEIGHT
        else kept[p]++
      }
    }
    const empty = kept.indexOf(0)
    if (empty >= 0)
      throw new PolicyValueError(`all K log-weights of sample ${b}, pixel ${empty} are −∞`)
  }
  return out
}
