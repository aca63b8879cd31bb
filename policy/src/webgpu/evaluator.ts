/// <reference types="@webgpu/types" />
/**
 * @module webgpu/evaluator
 * Single velocity queries on the GPU — the WebGPU counterpart of `createGmPolicy(...).velocity` and
 * `createDxPolicy(...).velocity`, with per-sample σ_src / σ_t. It runs exactly the kernels the
 * integrator runs (same prepare passes, same posterior code) and reads the intermediates back, so the
 * golden `gm_velocity` / `dx_velocity` cases check the GPU math itself, not a CPU stand-in.
 */
import { PolicyOptionError, PolicyShapeError } from '../errors.ts'
import type { DxOutput, DxPolicyOptions, GmOutput, GmPolicyOptions, LatentShape } from '../types.ts'
import { checkInt, checkNumber, checkShape, checkSigmas } from '../validate.ts'
import { DROPPED_CUTOFF } from './common.wgsl.ts'
import { halfMeansBytes, MAX_GM_COMPONENTS, PolicyKernels } from './kernels.ts'
import { dxScalars, gmScalars, logweightsForGpu, velocityPlan } from './scalars.ts'

const DEFAULT_EPS = 1e-4

/** One velocity query: a policy built at (x_src, σ_src) evaluated at (x_t, σ_t). */
export interface VelocityQuery<O> {
  output: O
  xSrc: Float32Array
  /** σ_src per sample (B) */
  sigmaSrc: ArrayLike<number>
  xT: Float32Array
  /** σ_t per sample (B) */
  sigmaT: ArrayLike<number>
  shape: LatentShape
}

/** GM velocity and the intermediates golden `gm_velocity` lists. */
export interface GmVelocityResult {
  u: Float32Array
  x0Hat: Float32Array
  /** (B,K,1,H,W) */
  posteriorWeights: Float32Array
  /** (B,K,C,H,W), as stored on the GPU (half-rounded when f16) */
  meansX0: Float32Array
  /** (B,K,1,H,W), −∞ for dropped components */
  logweightsEffective: Float32Array
  /** (B) */
  varX0: Float32Array
}

/** DX velocity and its x0-space nodes. */
export interface DxVelocityResult {
  u: Float32Array
  x0Hat: Float32Array
  /** (B,N,C,H,W) */
  nodesX0: Float32Array
}

/** Velocity queries on one device (calls run one after another). */
export interface WebGpuPolicyEvaluator {
  readonly device: GPUDevice
  readonly f16: boolean
  gmVelocity(
    query: VelocityQuery<GmOutput<Float32Array>> & GmPolicyOptions,
    signal?: AbortSignal,
  ): Promise<GmVelocityResult>
  dxVelocity(
    query: VelocityQuery<DxOutput<Float32Array>> & DxPolicyOptions,
    signal?: AbortSignal,
  ): Promise<DxVelocityResult>
  destroy(): void
}

/**
 * Creates a velocity evaluator on the caller's device (for conformance tests and debugging; sampling
 * uses {@link createWebGpuIntegrator}).
 * @example
 * ```ts
 * const evaluator = createWebGpuPolicyEvaluator(device)
 * const { u } = await evaluator.gmVelocity({ output, xSrc, sigmaSrc: [1], xT, sigmaT: [0.6], shape })
 * ```
 */
export function createWebGpuPolicyEvaluator(
  device: GPUDevice,
  options: { f16?: boolean } = {},
): WebGpuPolicyEvaluator {
  if (device == null || typeof device.createBuffer !== 'function') {
    throw new PolicyOptionError('device must be a GPUDevice')
  }
  const f16 = options.f16 === true
  const kernels = new PolicyKernels(device, f16)

  return {
    device,
    f16,

    async gmVelocity(query, signal) {
      const { batch: B, channels: C } = query.shape
      const size = checkQuery(query)
      const P = query.shape.height * query.shape.width
      const K = checkInt('output.k', query.output?.k, 1, MAX_GM_COMPONENTS)
      checkF32('output.meansU', query.output.meansU, size * K)
      kernels.checkGmChannels(C)
      checkF32('output.logweights', query.output.logweights, B * K * P)
      checkF32('output.logstds', query.output.logstds, B)
      const eps = checkNumber('eps', query.eps ?? DEFAULT_EPS, 0, 1, true)
      const temperature = checkNumber('temperature', query.temperature ?? 1, 0, Infinity, true)
      const sigmaSrc = checkSigmas('sigmaSrc', query.sigmaSrc, B)
      const sigmaT = checkSigmas('sigmaT', query.sigmaT, B)
      const logweights = logweightsForGpu(query.output.logweights, query.dropoutMask, B, K, P)
      const scalars = gmScalars(sigmaSrc, velocityPlan(sigmaT, eps), eps, temperature)
      signal?.throwIfAborted()

      const meansBytes = f16 ? halfMeansBytes(B, K, C, P) : size * K * 4
      const [out, meansX0, lwEff, varX0] = await kernels.exclusive(() =>
        kernels.run(
          'gm-velocity',
          (encoder) => {
            const scratch = kernels.encodeGm(encoder, {
              batch: B,
              channels: C,
              pixels: P,
              policy: {
                k: K,
                meansU: kernels.upload('input-means-u', query.output.meansU),
                logweights: kernels.upload('input-logweights', logweights),
                logstds: kernels.upload('input-logstds', query.output.logstds),
              },
              x: kernels.upload('x', query.xSrc),
              xQuery: kernels.upload('x-t', query.xT),
              scalars,
              numSubsteps: 1,
              eps,
              temperature,
              mode: 'velocity',
            })
            return [
              { buffer: scratch.out!, bytes: (2 * size + B * K * P) * 4 },
              { buffer: scratch.meansX0, bytes: meansBytes },
              { buffer: scratch.logweightsEff, bytes: B * K * P * 4 },
              { buffer: scratch.varX0, bytes: B * 4 },
            ]
          },
          signal,
        ),
      )
      const results = new Float32Array(out)
      const logweightsEffective = new Float32Array(lwEff)
      for (let i = 0; i < logweightsEffective.length; i++) {
        if (logweightsEffective[i] <= DROPPED_CUTOFF) logweightsEffective[i] = -Infinity
      }
      return {
        u: results.slice(0, size),
        x0Hat: results.slice(size, 2 * size),
        posteriorWeights: results.slice(2 * size),
        meansX0: f16
          ? unpackHalfMeans(new Uint32Array(meansX0), B, K, C, P)
          : new Float32Array(meansX0),
        logweightsEffective,
        varX0: new Float32Array(varX0),
      }
    },

    async dxVelocity(query, signal) {
      const { batch: B, channels: C } = query.shape
      const size = checkQuery(query)
      const P = query.shape.height * query.shape.width
      const N = checkInt('output.n', query.output?.n, 1, 4096)
      checkF32('output.gridU', query.output.gridU, size * N)
      if (query.mode !== 'grid' && query.mode !== 'polynomial') {
        throw new PolicyOptionError(
          `mode must be 'grid' or 'polynomial', got ${String(query.mode)}`,
        )
      }
      const eps = checkNumber('eps', query.eps ?? DEFAULT_EPS, 0, 1, true)
      const sigmaSrc = checkSigmas('sigmaSrc', query.sigmaSrc, B)
      const sigmaT = checkSigmas('sigmaT', query.sigmaT, B)
      const scalars = dxScalars(sigmaSrc, velocityPlan(sigmaT, eps), {
        n: N,
        segmentSize: checkNumber('segmentSize', query.segmentSize, 0, 1),
        shift: checkNumber('shift', query.shift, 0, Infinity, true),
        mode: query.mode,
        eps,
      })
      signal?.throwIfAborted()
      const [out, nodes] = await kernels.exclusive(() =>
        kernels.run(
          'dx-velocity',
          (encoder) => {
            const scratch = kernels.encodeDx(encoder, {
              batch: B,
              channels: C,
              pixels: P,
              policy: { n: N, gridU: kernels.upload('input-grid-u', query.output.gridU) },
              x: kernels.upload('x', query.xSrc),
              xQuery: kernels.upload('x-t', query.xT),
              scalars,
              numSubsteps: 1,
              dxMode: query.mode,
              mode: 'velocity',
            })
            return [
              { buffer: scratch.out!, bytes: 2 * size * 4 },
              { buffer: scratch.nodes, bytes: N * size * 4 },
            ]
          },
          signal,
        ),
      )
      const results = new Float32Array(out)
      return {
        u: results.slice(0, size),
        x0Hat: results.slice(size),
        nodesX0: new Float32Array(nodes),
      }
    },

    destroy() {
      kernels.destroy()
    },
  }
}

function checkQuery(query: VelocityQuery<unknown>): number {
  if (query == null || typeof query !== 'object')
    throw new PolicyOptionError('query must be an object')
  const size = checkShape(query.shape)
  checkF32('xSrc', query.xSrc, size)
  checkF32('xT', query.xT, size)
  return size
}

function checkF32(name: string, array: unknown, length: number): void {
  if (!(array instanceof Float32Array) || array.length !== length) {
    throw new PolicyShapeError(`${name} must be a Float32Array of ${length} elements`)
  }
}

/** Half-packed means_x0 (B,K,⌈C/2⌉,P) words → float32 (B,K,C,P). */
function unpackHalfMeans(words: Uint32Array, B: number, K: number, C: number, P: number) {
  const out = new Float32Array(B * K * C * P)
  const W = Math.ceil(C / 2)
  for (let bk = 0; bk < B * K; bk++) {
    for (let c = 0; c < C; c++) {
      for (let p = 0; p < P; p++) {
        const word = words[(bk * W + (c >> 1)) * P + p]
        out[(bk * C + c) * P + p] = halfToFloat(c & 1 ? word >>> 16 : word & 0xffff)
      }
    }
  }
  return out
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  if (exponent === 0) return sign * 2 ** -14 * (mantissa / 1024)
  if (exponent === 31) return mantissa ? Number.NaN : sign * Infinity
  return sign * 2 ** (exponent - 15) * (1 + mantissa / 1024)
}
