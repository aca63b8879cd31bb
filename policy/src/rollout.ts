/**
 * @module rollout
 * Substep integration of one NFE segment (fixtures/golden/README.md §3 `rollout`): n = max(round((τ0 − τ1)·total), 1)
 * Euler substeps uniform in raw time, x ← x + π(x, σ)·(σ' − σ). Scratch buffers are allocated once per
 * call; the substep loop allocates nothing.
 */
import { PolicyOptionError, PolicyShapeError, PolicySigmaError } from './errors.ts'
import { unwarp, warp } from './shift.ts'
import type { FloatArray, Policy } from './types.ts'
import { allocLike, checkNumber, checkSigma, checkTensor, roundHalfEven } from './validate.ts'

/** Options of {@link rollout}. */
export interface RolloutOptions {
  /** σ at the segment start (the state `x` holds on entry) */
  sigmaSrc: number
  /** σ at the segment end (≤ sigmaSrc) */
  sigmaDst: number
  /** time shift s of the raw-time grid */
  shift: number
  /** substeps per unit of raw time (released models: 128) */
  totalSubsteps: number
  /** Record the n + 1 σ values visited (first = σ_src). @default false */
  recordSigmas?: boolean
}

/** {@link rollout} options plus a per-substep observer (debugging, trajectories, previews). */
export interface ObservedRolloutOptions<T extends FloatArray> extends RolloutOptions {
  /** Called before the first substep (i = 0) and after each substep i = 1…n with σ and the live state. */
  onSubstep?: (index: number, sigma: number, x: T) => void
}

/** What {@link rollout} did. */
export interface RolloutResult {
  numSubsteps: number
  rawSrc: number
  rawDst: number
  /** τ after the last substep (equals rawDst up to rounding) */
  rawFinal: number
  /** σ after the last substep */
  sigmaFinal: number
  /** n + 1 values when `recordSigmas` was set */
  sigmas?: Float64Array
}

/** Substep count rule: max(round((τ_src − τ_dst)·totalSubsteps), 1), round half to even. */
export const substepCount = (rawSrc: number, rawDst: number, totalSubsteps: number): number =>
  Math.max(roundHalfEven((rawSrc - rawDst) * totalSubsteps), 1)

/**
 * Integrates `x` (updated in place) from σ_src to σ_dst with the policy of the segment.
 *
 * @example
 * ```ts
 * const { numSubsteps } = rollout(pi, x, { sigmaSrc: 1, sigmaDst: 0.889, shift: 3.2, totalSubsteps: 128 })
 * ```
 * @throws {PolicyError} when σ values are outside [0, 1], σ_dst > σ_src, shift ≤ 0 or totalSubsteps ≤ 0
 */
export function rollout<T extends FloatArray>(
  policy: Policy<T>,
  x: T,
  options: ObservedRolloutOptions<T>,
): RolloutResult {
  const sigmaSrc = checkSigma('sigmaSrc', options.sigmaSrc)
  const sigmaDst = checkSigma('sigmaDst', options.sigmaDst)
  if (sigmaDst > sigmaSrc) {
    throw new PolicySigmaError(`sigmaDst (${sigmaDst}) must not exceed sigmaSrc (${sigmaSrc})`)
  }
  const shift = checkShift(options.shift)
  const totalSubsteps = checkTotalSubsteps(options.totalSubsteps)
  const B = policy.shape.batch
  const rawSrc = unwarp(sigmaSrc, shift)
  const rawDst = unwarp(sigmaDst, shift)
  const n = substepCount(rawSrc, rawDst, totalSubsteps)
  const sigmas = options.recordSigmas ? new Float64Array(n + 1) : undefined
  const observer = options.onSubstep
  const result = rolloutPerSample(policy, x, {
    rawSrc: new Float64Array(B).fill(rawSrc),
    rawDst: new Float64Array(B).fill(rawDst),
    sigmaSrc: new Float64Array(B).fill(sigmaSrc),
    shift,
    totalSubsteps,
    ...(sigmas || observer
      ? {
          onSubstep: (i: number, sigma: Float64Array) => {
            if (sigmas) sigmas[i] = sigma[0]
            observer?.(i, sigma[0], x)
          },
        }
      : {}),
  })
  return {
    numSubsteps: n,
    rawSrc,
    rawDst,
    rawFinal: result.rawFinal[0],
    sigmaFinal: result.sigmaFinal[0],
    ...(sigmas ? { sigmas } : {}),
  }
}

/** Options of {@link rolloutPerSample}: raw times and start σ per sample. */
export interface PerSampleRolloutOptions {
  rawSrc: ArrayLike<number>
  /** may be below 0 (π-ID windows): τ is clamped at 0 after each substep */
  rawDst: ArrayLike<number>
  /** σ on entry per sample (usually warp(rawSrc)) */
  sigmaSrc: ArrayLike<number>
  shift: number
  totalSubsteps: number
  /** called with the substep index and σ per sample: i = 0 before the first substep, i = n after the last */
  onSubstep?: (i: number, sigma: Float64Array) => void
}

/** What {@link rolloutPerSample} did, per sample. */
export interface PerSampleRolloutResult {
  numSubsteps: Int32Array
  rawFinal: Float64Array
  sigmaFinal: Float64Array
}

/**
 * Rollout where every sample has its own segment (π-ID). Sample b takes n_b substeps of size
 * h_b = (τ_src − τ_dst)/n_b; once a sample is done its σ stops moving, so its state is left exactly
 * unchanged (dσ = 0) while the others finish.
 */
export function rolloutPerSample<T extends FloatArray>(
  policy: Policy<T>,
  x: T,
  options: PerSampleRolloutOptions,
): PerSampleRolloutResult {
  const B = policy.shape.batch
  const { onSubstep } = options
  const shift = checkShift(options.shift)
  const totalSubsteps = checkTotalSubsteps(options.totalSubsteps)
  const { channels, height, width } = policy.shape
  checkTensor('x', x, B * channels * height * width, '(B,C,H,W)')
  for (const name of ['rawSrc', 'rawDst', 'sigmaSrc'] as const) {
    if (options[name]?.length !== B) {
      throw new PolicyShapeError(
        `${name} must have one value per sample (${B}), got ${options[name]?.length}`,
      )
    }
  }
  const numSubsteps = new Int32Array(B)
  const h = new Float64Array(B)
  const tau = new Float64Array(B)
  const sigma = new Float64Array(B)
  const sigmaNext = new Float64Array(B)
  let maxSteps = 0
  for (let b = 0; b < B; b++) {
    const t0 = options.rawSrc[b]
    const t1 = options.rawDst[b]
    if (!(t0 >= 0 && t0 <= 1) || !Number.isFinite(t1) || t1 > t0) {
      throw new PolicySigmaError(`sample ${b}: need 0 ≤ rawDst ≤ rawSrc ≤ 1, got ${t0} → ${t1}`)
    }
    numSubsteps[b] = substepCount(t0, t1, totalSubsteps)
    h[b] = (t0 - t1) / numSubsteps[b]
    tau[b] = t0
    sigma[b] = checkSigma(`sigmaSrc[${b}]`, options.sigmaSrc[b])
    if (numSubsteps[b] > maxSteps) maxSteps = numSubsteps[b]
  }
  // A rollout from the policy's own source may run in its cheaper coordinates (GM: span of the means).
  const fast = policy.startRollout?.(x) ?? null
  // Policies without a fused step need u; allocated once here, never per substep.
  const u = fast || policy.step ? null : allocLike(x, x.length)
  const perSample = x.length / B
  onSubstep?.(0, sigma)
  for (let i = 0; i < maxSteps; i++) {
    for (let b = 0; b < B; b++) {
      if (i < numSubsteps[b]) {
        tau[b] = Math.max(tau[b] - h[b], 0)
        sigmaNext[b] = warp(tau[b], shift)
      } else {
        sigmaNext[b] = sigma[b]
      }
    }
    if (fast) {
      fast.step(sigma, sigmaNext)
      if (onSubstep) fast.write(x)
    } else if (policy.step) {
      policy.step(x, sigma, sigmaNext)
    } else {
      policy.velocity(u as T, x, sigma)
      for (let b = 0; b < B; b++) {
        const ds = sigmaNext[b] - sigma[b]
        if (ds === 0) continue
        const o = b * perSample
        for (let j = o; j < o + perSample; j++) x[j] += (u as T)[j] * ds
      }
    }
    sigma.set(sigmaNext)
    onSubstep?.(i + 1, sigma)
  }
  if (fast && !onSubstep) fast.write(x)
  return { numSubsteps, rawFinal: tau, sigmaFinal: sigma }
}

function checkShift(shift: unknown): number {
  return checkNumber('shift', shift, 0, Number.POSITIVE_INFINITY, true)
}

function checkTotalSubsteps(total: unknown): number {
  const value = checkNumber('totalSubsteps', total, 0, 1e6, true)
  if (value < 1) throw new PolicyOptionError(`totalSubsteps must be ≥ 1, got ${value}`)
  return value
}

export { checkShift, checkTotalSubsteps }
