/**
 * @module dx
 * DX policy, fixtures/golden/README.md §3 `dx_velocity`: N x0 nodes over the segment, interpolated in raw time
 * (`grid`: piecewise linear, node 0 = segment end, node N−1 = segment start) or used as polynomial
 * coefficients in (τ_src − τ) (`polynomial`). x0_hat does not depend on x_t, so a query costs one pass
 * over two nodes (grid) or N nodes (polynomial).
 */
import { PolicyOptionError } from './errors.ts'
import { unwarp } from './shift.ts'
import type { DxOutput, DxPolicyOptions, FloatArray, LatentShape, Policy } from './types.ts'
import {
  allocLike,
  checkInt,
  checkNumber,
  checkShape,
  checkSigmas,
  checkSigmasInPlace,
  checkTensor,
} from './validate.ts'

/** Default eps of the DX policy. */
export const DX_DEFAULT_EPS = 1e-4

/** A DX policy plus the intermediate quantities the golden cases check. */
export interface DxPolicy<T extends FloatArray = FloatArray> extends Policy<T> {
  readonly type: 'dx'
  readonly n: number
  readonly mode: 'grid' | 'polynomial'
  readonly eps: number
  /** X_n = x_src − σ_src·grid_u_n, (B,N,C,H,W) */
  readonly nodesX0: T
  /** τ_src, τ_dst = max(τ_src − segmentSize, 0) and S = max(τ_src − τ_dst, eps), per sample */
  readonly rawSrc: Float64Array
  readonly rawDst: Float64Array
  readonly segmentEffective: Float64Array
  /** Raw time of a noise level under the policy's shift. */
  rawTime(sigma: number): number
  /** Writes x0_hat (B,C,H,W) at σ_t. */
  x0Hat(out: T, xT: T, sigmaT: ArrayLike<number>): T
  step(x: T, sigmaT: ArrayLike<number>, sigmaNext: ArrayLike<number>): T
}

/**
 * Builds the DX policy of one NFE segment from the network output at (x_src, σ_src).
 *
 * @param output `gridU` (B,N,C,H,W) in u-space at the source state
 * @param xSrc the state the network saw (B,C,H,W)
 * @param sigmaSrc σ_src per sample (B)
 * @param shape latent shape
 * @param options segmentSize (raw time), shift, mode, eps (default 1e-4)
 * @throws {PolicyError} on inconsistent lengths or options out of range
 */
export function createDxPolicy<T extends FloatArray>(
  output: DxOutput<T>,
  xSrc: T,
  sigmaSrc: ArrayLike<number>,
  shape: LatentShape,
  options: DxPolicyOptions,
): DxPolicy<T> {
  const size = checkShape(shape)
  const { batch: B, channels: C } = shape
  const HW = shape.height * shape.width
  const plane = C * HW
  if (output == null || typeof output !== 'object' || output.type !== 'dx') {
    throw new PolicyOptionError("output must be a DX output {type: 'dx', n, gridU}")
  }
  if (options == null || typeof options !== 'object') {
    throw new PolicyOptionError('options {segmentSize, shift, mode} are required for a DX policy')
  }
  const N = checkInt('output.n', output.n, 1, 4096)
  const dims = `(B=${B}, N=${N}, C=${C}, H=${shape.height}, W=${shape.width})`
  const xDims = `(B,C,H,W) ${dims}` // built once: per-substep checks must not allocate
  checkTensor('xSrc', xSrc, size, xDims)
  const gridU = checkTensor('output.gridU', output.gridU, B * N * plane, `(B,N,C,H,W) ${dims}`)
  const sigmaSrcs = checkSigmas('sigmaSrc', sigmaSrc, B)
  const segmentSize = checkNumber('options.segmentSize', options.segmentSize, 0, 1)
  const shift = checkNumber('options.shift', options.shift, 0, Number.POSITIVE_INFINITY, true)
  const eps = checkNumber('options.eps', options.eps ?? DX_DEFAULT_EPS, 0, 1, true)
  const mode = options.mode
  if (mode !== 'grid' && mode !== 'polynomial') {
    throw new PolicyOptionError(`options.mode must be 'grid' or 'polynomial', got ${String(mode)}`)
  }

  const nodes = allocLike(xSrc, B * N * plane)
  for (let b = 0; b < B; b++) {
    const s = sigmaSrcs[b]
    for (let n = 0; n < N; n++) {
      const o = (b * N + n) * plane
      for (let j = 0; j < plane; j++) nodes[o + j] = xSrc[b * plane + j] - s * gridU[o + j]
    }
  }
  const rawSrc = new Float64Array(B)
  const rawDst = new Float64Array(B)
  const segmentEffective = new Float64Array(B)
  for (let b = 0; b < B; b++) {
    rawSrc[b] = unwarp(sigmaSrcs[b], shift)
    rawDst[b] = Math.max(rawSrc[b] - segmentSize, 0)
    segmentEffective[b] = Math.max(rawSrc[b] - rawDst[b], eps)
  }

  const weights = new Float64Array(B * N) // node weights of the current query, per sample
  const cx = new Float64Array(B)
  const c0 = new Float64Array(B)

  /** Node weights of x0_hat at σ_t, per sample (golden §3 dx_velocity). */
  const prepareWeights = (sigmaT: ArrayLike<number>) => {
    weights.fill(0)
    for (let b = 0; b < B; b++) {
      const tau = unwarp(sigmaT[b], shift)
      const w = b * N
      if (mode === 'polynomial') {
        const dt = rawSrc[b] - tau
        let power = 1
        for (let n = 0; n < N; n++) {
          weights[w + n] = power
          power *= dt
        }
      } else if (N === 1) {
        weights[w] = 1
      } else {
        const unit = Math.min(Math.max((tau - rawDst[b]) / segmentEffective[b], 0), 1)
        const q = unit * (N - 1)
        const i = Math.min(Math.max(Math.floor(q), 0), N - 2)
        weights[w + i] = i + 1 - q
        weights[w + i + 1] = q - i
      }
    }
  }

  const checkQuery = (name: string, out: T, xT: T, sigmaT: ArrayLike<number>) => {
    checkTensor(name, out, size, xDims)
    checkTensor('xT', xT, size, xDims)
    checkSigmasInPlace('sigmaT', sigmaT, B)
  }

  const policy: DxPolicy<T> = {
    type: 'dx',
    shape: { ...shape },
    n: N,
    mode,
    eps,
    nodesX0: nodes,
    rawSrc,
    rawDst,
    segmentEffective,
    rawTime: (sigma) => unwarp(sigma, shift),

    velocity(out, xT, sigmaT) {
      checkQuery('out', out, xT, sigmaT)
      prepareWeights(sigmaT)
      for (let b = 0; b < B; b++) {
        const st = Math.max(sigmaT[b], eps)
        cx[b] = 1 / st
        c0[b] = -1 / st
      }
      dxKernel(nodes, weights, B, N, plane, xT, out, cx, c0)
      return out
    },

    step(x, sigmaT, sigmaNext) {
      checkQuery('x', x, x, sigmaT)
      checkSigmasInPlace('sigmaNext', sigmaNext, B)
      prepareWeights(sigmaT)
      for (let b = 0; b < B; b++) {
        const ratio = (sigmaNext[b] - sigmaT[b]) / Math.max(sigmaT[b], eps)
        cx[b] = 1 + ratio
        c0[b] = -ratio
      }
      dxKernel(nodes, weights, B, N, plane, x, x, cx, c0)
      return x
    },

    x0Hat(out, xT, sigmaT) {
      checkQuery('out', out, xT, sigmaT)
      prepareWeights(sigmaT)
      cx.fill(0)
      c0.fill(1)
      dxKernel(nodes, weights, B, N, plane, xT, out, cx, c0)
      return out
    },
  }
  return policy
}

/**
 * out = cx·x_t + c0·Σ_n w_n·X_n per sample, x0 accumulated in float64 per element. Only the nodes with a
 * non-zero weight are read (two for grid mode). `out` may alias `xT`.
 */
function dxKernel(
  nodes: FloatArray,
  weights: Float64Array,
  B: number,
  N: number,
  plane: number,
  xT: FloatArray,
  out: FloatArray,
  cx: Float64Array,
  c0: Float64Array,
): void {
  for (let b = 0; b < B; b++) {
    let lo = 0
    let hi = N - 1
    while (lo < hi && weights[b * N + lo] === 0) lo++
    while (hi > lo && weights[b * N + hi] === 0) hi--
    const xo = b * plane
    const a = cx[b]
    const q = c0[b]
    for (let j = 0; j < plane; j++) {
      let x0 = 0
      for (let n = lo; n <= hi; n++) x0 += weights[b * N + n] * nodes[(b * N + n) * plane + j]
      out[xo + j] = a * xT[xo + j] + q * x0
    }
  }
}
