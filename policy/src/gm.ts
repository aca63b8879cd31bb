/**
 * @module gm
 * GM (Gaussian-mixture) policy, fixtures/golden/README.md §3 `gm_velocity`.
 *
 * The network predicts, per pixel, a K-component mixture over x0 (means in u-space at (x_src, σ_src),
 * per-pixel log-weights, one log-std per sample). Given a query (x_t, σ_t) the velocity is
 * u = (x_t − E[x0 | x_t, x_src]) / σ_t, where the posterior keeps the mixture form.
 *
 * This module builds the policy of a segment (log-weights after dropout and temperature, the data of
 * its kernel) and answers queries through one kernel pass: the WebAssembly SIMD kernel for
 * Float32Array tensors (wasm/gm-wasm.ts), else the JS kernel (gm-kernel.ts, which also explains the
 * data layout). Rollouts from the source state run in the span of x_src and the K means
 * (gm-subspace.ts).
 */
import { PolicyOptionError, PolicyShapeError, PolicyValueError } from './errors.ts'
import {
  ALPHA,
  BETA,
  C0,
  COEFS,
  CX,
  checkFinite,
  gmKernel,
  HALF_ZETA,
  INV_D,
  packPixelMajor,
  sameAsSource,
  VAR,
} from './gm-kernel.ts'
import { buildGram, createSubspaceRollout } from './gm-subspace.ts'
import type {
  FloatArray,
  GmOutput,
  GmPolicyOptions,
  LatentShape,
  Policy,
  PolicyRollout,
} from './types.ts'
import {
  allocLike,
  checkInt,
  checkNumber,
  checkShape,
  checkSigmas,
  checkSigmasInPlace,
  checkTensor,
  MAX_ELEMENTS,
} from './validate.ts'
import {
  activeGmKernel,
  fromGroupMajor,
  type GmKernelChoice,
  type GmKernelScalars,
  GmWasmRegion,
  GmWasmState,
} from './wasm/gm-wasm.ts'
/** piFlow's GMFlowPolicy default. */
export const GM_DEFAULT_EPS = 1e-4

/** A GM policy plus the intermediate quantities the golden cases check. */
export interface GmPolicy<T extends FloatArray = FloatArray> extends Policy<T> {
  readonly type: 'gm'
  readonly k: number
  readonly eps: number
  readonly temperature: number
  /** which kernel evaluates it: `wasm` (Float32Array fast path) or `js` (see wasm/gm-wasm.ts) */
  readonly kernel: 'js' | 'wasm'
  /** σ_src per sample */
  readonly sigmaSrc: Float64Array
  /** var_x0 per sample, after temperature */
  readonly varX0: Float64Array
  /** (B,K) mask after the "all-true row is ignored" rule (1 = dropped), or null when none was given */
  readonly dropoutMaskEffective: Uint8Array | null
  /** Writes means_x0 (B,K,C,H,W) into `out` (allocated when omitted). */
  meansX0(out?: T): T
  /** Writes the log-weights after dropout and temperature (B,K,1,H,W). */
  logweightsEffective(out?: T): T
  /** Writes the posterior mean E[x0 | x_t] (B,C,H,W). */
  x0Hat(out: T, xT: T, sigmaT: ArrayLike<number>): T
  /** Writes the posterior mixture weights (B,K,1,H,W) at (x_t, σ_t). */
  posteriorWeights(out: T, xT: T, sigmaT: ArrayLike<number>): T
  step(x: T, sigmaT: ArrayLike<number>, sigmaNext: ArrayLike<number>): T
  startRollout(x: T): PolicyRollout<T> | null
}

/** What the kernel writes (see `prepare`). */
const OutMode = { Velocity: 0, X0: 1, Euler: 2 } as const
type OutMode = (typeof OutMode)[keyof typeof OutMode]

/**
 * Builds the GM policy of one NFE segment from the network output at (x_src, σ_src).
 *
 * @param output  `meansU` (B,K,C,H,W), `logweights` (B,K,1,H,W), `logstds` (B) — u-space at the source
 * @param xSrc    the state the network saw (B,C,H,W); copied, so the caller may overwrite it afterwards
 * @param sigmaSrc σ_src per sample (B)
 * @param shape   latent shape (B,C,H,W)
 * @param options eps (default 1e-4), temperature (default 1 = none), dropoutMask (B,K) true = drop
 * @returns a policy whose `velocity` allocates nothing
 * @throws {PolicyError} on inconsistent lengths, σ outside [0,1], K < 1, NaN/+∞ values
 * @example
 * ```ts
 * const pi = createGmPolicy(output, x, [1], { batch: 1, channels: 4, height: 32, width: 32 })
 * pi.velocity(u, x, [0.8])
 * ```
 */
export function createGmPolicy<T extends FloatArray>(
  output: GmOutput<T>,
  xSrc: T,
  sigmaSrc: ArrayLike<number>,
  shape: LatentShape,
  options: GmPolicyOptions = {},
): GmPolicy<T> {
  const size = checkShape(shape)
  const { batch: B, channels: C } = shape
  const HW = shape.height * shape.width
  if (output == null || typeof output !== 'object' || output.type !== 'gm') {
    throw new PolicyOptionError(
      "output must be a GM output {type: 'gm', k, meansU, logweights, logstds}",
    )
  }
  const K = checkInt('output.k', output.k, 1, 4096)
  const dims = `(B=${B}, K=${K}, C=${C}, H=${shape.height}, W=${shape.width})`
  // built once: the per-substep checks below must not allocate
  const xDims = `(B,C,H,W) ${dims}`
  const wDims = `(B,K,1,H,W) ${dims}`
  const mDims = `(B,K,C,H,W) ${dims}`
  checkTensor('xSrc', xSrc, size, xDims)
  const meansU = checkTensor('output.meansU', output.meansU, B * K * C * HW, mDims)
  const logweights = checkTensor('output.logweights', output.logweights, B * K * HW, wDims)
  const logstds = checkTensor('output.logstds', output.logstds, B, `(B) ${dims}`)
  const sigmaSrcs = checkSigmas('sigmaSrc', sigmaSrc, B)
  const eps = checkNumber('options.eps', options.eps ?? GM_DEFAULT_EPS, 0, 1, true)
  const temperature = checkNumber('options.temperature', options.temperature ?? 1, 0)
  const mask = effectiveDropoutMask(options.dropoutMask, B, K)

  const varX0 = new Float64Array(B)
  for (let b = 0; b < B; b++) {
    const logstd = logstds[b]
    if (!Number.isFinite(logstd)) throw new PolicyValueError(`output.logstds[${b}] is ${logstd}`)
    varX0[b] = sigmaSrcs[b] * sigmaSrcs[b] * Math.exp(2 * logstd)
    if (temperature < 1) varX0[b] *= temperature
  }

  const lwKernel = kernelLogweights(logweights, mask, temperature, eps, B, K, HW)
  const wasm = pickWasmState(xSrc, options.kernel, B, K, C, HW)
  const compStride = C + 2
  const pixStride = C + K * compStride
  const packed = wasm
    ? null
    : packPixelMajor(meansU, xSrc, lwKernel.lw, sigmaSrcs, B, K, C, HW, dims)
  if (wasm)
    packGroupMajor(wasm, meansU as Float32Array, xSrc as Float32Array, lwKernel.lw, sigmaSrcs)

  const geometry = { B, K, C, HW, pixStride }
  let gram: T | null = null // built on the first source rollout (see module doc)
  const coefs = new Float64Array(B * COEFS)
  const scratch = new Float64Array(3 * C + K)

  /**
   * Per-sample coefficients at σ_t (see module doc for the regrouping). `mode` picks what the kernel
   * writes: out = cx·x_t + c0·x0_hat with (cx, c0) = velocity (1/σ̃, −1/σ̃), x0_hat (0, 1) or the fused
   * Euler step (1 + dσ/σ̃, −dσ/σ̃). No closures: this runs once per substep and must not allocate.
   */
  const prepare = (
    mode: OutMode,
    sigmaT: ArrayLike<number>,
    sigmaNext: ArrayLike<number> | null,
  ) => {
    for (let b = 0; b < B; b++) {
      const st = Math.max(sigmaT[b], eps)
      const ss = Math.max(sigmaSrcs[b], eps)
      const rt = (1 - st) / st
      const rs = (1 - ss) / ss
      const zeta = rt * rt - rs * rs
      const d = Math.max(1 + varX0[b] * zeta, eps)
      const o = b * COEFS
      coefs[o + ALPHA] = rt / st
      coefs[o + BETA] = rs / ss
      coefs[o + HALF_ZETA] = 0.5 * zeta
      coefs[o + INV_D] = 1 / d
      coefs[o + VAR] = varX0[b]
      if (mode === OutMode.Velocity) {
        coefs[o + CX] = 1 / st
        coefs[o + C0] = -1 / st
      } else if (mode === OutMode.X0) {
        coefs[o + CX] = 0
        coefs[o + C0] = 1
      } else {
        const ratio = ((sigmaNext as ArrayLike<number>)[b] - sigmaT[b]) / st
        coefs[o + CX] = 1 + ratio
        coefs[o + C0] = -ratio
      }
    }
  }

  let released = false
  const checkAlive = () => {
    if (released) throw new PolicyOptionError('this GM policy was released; build a new one')
  }
  const checkQuery = (name: string, out: T, xT: T, sigmaT: ArrayLike<number>) => {
    checkAlive()
    checkTensor(name, out, size, xDims)
    checkTensor('xT', xT, size, xDims)
    checkSigmasInPlace('sigmaT', sigmaT, B)
  }

  // The one kernel pass every query and step goes through: out = cx·x_t + c0·x0_hat at the
  // coefficients `prepare` left in `coefs` (the WebAssembly kernel when this policy has one).
  const wasmScalars: GmKernelScalars = {
    alpha: 0,
    beta: 0,
    halfZeta: 0,
    invD: 0,
    invDLog2: 0,
    variance: 0,
    a: 0,
    b: 0,
  }
  const setWasmScalars = (b: number) => {
    const o = b * COEFS
    wasmScalars.alpha = coefs[o + ALPHA]
    wasmScalars.beta = coefs[o + BETA]
    wasmScalars.halfZeta = coefs[o + HALF_ZETA]
    wasmScalars.invD = coefs[o + INV_D]
    wasmScalars.invDLog2 = coefs[o + INV_D] * Math.LOG2E
    wasmScalars.variance = coefs[o + VAR]
    // out = cx·x + c0·x0 = (cx + c0)·x − c0·(x − x0): the kernel's form, exact for the identity step
    wasmScalars.a = coefs[o + CX] + coefs[o + C0]
    wasmScalars.b = -coefs[o + C0]
  }
  const runKernel = (xT: T, out: T, weightsOut: T | null) => {
    if (wasm === null) {
      gmKernel(packed as T, geometry, xT, out, coefs, scratch, weightsOut)
      return
    }
    wasm.load(GmWasmRegion.QueryIn, xT)
    for (let b = 0; b < B; b++) {
      setWasmScalars(b)
      wasm.run(
        b,
        GmWasmRegion.QueryIn,
        GmWasmRegion.QueryOut,
        wasmScalars,
        (weightsOut ?? undefined) as Float32Array | undefined,
      )
    }
    wasm.store(GmWasmRegion.QueryOut, out as Float32Array)
  }

  const policy: GmPolicy<T> = {
    type: 'gm',
    shape: { ...shape },
    k: K,
    eps,
    temperature,
    kernel: wasm ? 'wasm' : 'js',
    sigmaSrc: sigmaSrcs,
    varX0,
    dropoutMaskEffective: mask,

    velocity(out, xT, sigmaT) {
      checkQuery('out', out, xT, sigmaT)
      prepare(OutMode.Velocity, sigmaT, null)
      runKernel(xT, out, null)
      return out
    },

    step(x, sigmaT, sigmaNext) {
      checkQuery('x', x, x, sigmaT)
      checkSigmasInPlace('sigmaNext', sigmaNext, B)
      prepare(OutMode.Euler, sigmaT, sigmaNext)
      runKernel(x, x, null)
      return x
    },

    x0Hat(out, xT, sigmaT) {
      checkQuery('out', out, xT, sigmaT)
      prepare(OutMode.X0, sigmaT, null)
      runKernel(xT, out, null)
      return out
    },

    posteriorWeights(out, xT, sigmaT) {
      checkAlive()
      checkTensor('out', out, B * K * HW, wDims)
      checkTensor('xT', xT, size, xDims)
      checkSigmasInPlace('sigmaT', sigmaT, B)
      prepare(OutMode.X0, sigmaT, null)
      runKernel(xT, allocLike(xT, size), out)
      return out
    },

    startRollout(x) {
      checkAlive()
      if (wasm !== null) {
        // the state stays in wasm memory for the whole segment; any start state works
        checkTensor('x', x, size, xDims)
        wasm.load(GmWasmRegion.State, x)
        return {
          step(sigmaT, sigmaNext) {
            checkAlive()
            checkSigmasInPlace('sigmaT', sigmaT, B)
            checkSigmasInPlace('sigmaNext', sigmaNext, B)
            prepare(OutMode.Euler, sigmaT, sigmaNext)
            for (let b = 0; b < B; b++) {
              if (sigmaNext[b] === sigmaT[b]) continue // dσ = 0: the Euler update is the identity
              setWasmScalars(b)
              wasm.run(b, GmWasmRegion.State, GmWasmRegion.State, wasmScalars)
            }
          },
          write(out) {
            checkAlive()
            checkTensor('x', out, size, xDims)
            return wasm.store(GmWasmRegion.State, out as Float32Array) as T
          },
        }
      }
      // K > C: the span is no smaller than the C channels, the direct kernel is cheaper
      if (K > C || B * HW * K * (K + 2) > MAX_ELEMENTS || !sameAsSource(packed as T, geometry, x))
        return null
      gram ??= buildGram(packed as T, geometry, allocLike(xSrc, B * HW * K * (K + 2)))
      return createSubspaceRollout(packed as T, gram, geometry, {
        eps,
        sigmaSrc: sigmaSrcs,
        varX0,
        checkSigmas: (a, b) => {
          checkSigmasInPlace('sigmaT', a, B)
          checkSigmasInPlace('sigmaNext', b, B)
        },
        checkOut: (out) => checkTensor('x', out, size, xDims),
      })
    },

    meansX0(out = allocLike(xSrc, B * K * C * HW)) {
      checkAlive()
      checkTensor('out', out, B * K * C * HW, mDims)
      if (wasm !== null) {
        // component k of sample b: C planes at k·Cp within each group of K·Cp
        const lanes = wasm.groups * 4
        for (let b = 0; b < B; b++) {
          for (let k = 0; k < K; k++) {
            const at = wasm.means + b * lanes * K * wasm.Cp + k * wasm.Cp * 4
            const dst = (out as Float32Array).subarray(
              (b * K + k) * C * HW,
              (b * K + k + 1) * C * HW,
            )
            fromGroupMajor(wasm.f32, at, dst, 1, C, HW, K * wasm.Cp)
          }
        }
        return out
      }
      const data = packed as T
      for (let b = 0; b < B; b++) {
        for (let p = 0; p < HW; p++) {
          const base = (b * HW + p) * pixStride + C
          for (let k = 0; k < K; k++) {
            for (let c = 0; c < C; c++) {
              out[((b * K + k) * C + c) * HW + p] = data[base + k * compStride + c]
            }
          }
        }
      }
      return out
    },

    logweightsEffective(out = allocLike(xSrc, B * K * HW)) {
      checkAlive()
      checkTensor('out', out, B * K * HW, wDims)
      effectiveFromKernel(lwKernel, temperature, out, B, K, HW)
      return out
    },

    release() {
      if (released) return
      released = true
      wasm?.release()
    },
  }
  return policy
}

/** The wasm state of a new policy, or null for the JS kernel (see wasm/gm-wasm.ts for the choice). */
function pickWasmState(
  xSrc: FloatArray,
  requested: GmKernelChoice | undefined,
  B: number,
  K: number,
  C: number,
  HW: number,
): GmWasmState | null {
  if (!(xSrc instanceof Float32Array)) {
    if (requested === 'wasm') {
      throw new PolicyOptionError("kernel 'wasm' computes in float32: pass Float32Array tensors")
    }
    return null
  }
  return activeGmKernel(requested) === 'wasm' ? GmWasmState.create(B, K, C, HW) : null
}

/**
 * Log-weights after dropout and temperature, shifted so each pixel's largest is 0: (B,K,HW) float64,
 * −∞ for dropped components, plus the per-pixel shifts (B,HW). Softmax is shift-invariant, so the
 * kernels need neither the shift nor temperature's log-normalisation (a per-pixel constant too):
 * skipping the K exps and a log per pixel makes this ~10× cheaper, and 0-based logits keep float32
 * kernels precise. {@link effectiveFromKernel} rebuilds the golden `logweights_effective` on demand.
 * @throws {PolicyValueError} on NaN/+∞, or when every component of a pixel is dropped
 */
function kernelLogweights(
  logweights: FloatArray,
  mask: Uint8Array | null,
  temperature: number,
  eps: number,
  B: number,
  K: number,
  HW: number,
): { lw: Float64Array; shift: Float64Array } {
  const lw = new Float64Array(B * K * HW)
  const shift = new Float64Array(B * HW)
  const scale = temperature < 1 ? 1 / Math.max(temperature, eps) : 1
  for (let b = 0; b < B; b++) {
    const pixels = b * HW
    shift.fill(Number.NEGATIVE_INFINITY, pixels, pixels + HW)
    for (let k = 0; k < K; k++) {
      const row = (b * K + k) * HW
      const dropped = mask?.[b * K + k] === 1
      for (let p = 0; p < HW; p++) {
        const raw = logweights[row + p]
        if (Number.isNaN(raw) || raw === Number.POSITIVE_INFINITY) {
          throw new PolicyValueError(`output.logweights[${row + p}] is ${raw}`)
        }
        const v = dropped ? Number.NEGATIVE_INFINITY : raw * scale
        lw[row + p] = v
        if (v > shift[pixels + p]) shift[pixels + p] = v
      }
    }
    for (let p = 0; p < HW; p++) {
      if (shift[pixels + p] === Number.NEGATIVE_INFINITY) {
        throw new PolicyValueError(`all K log-weights of sample ${b}, pixel ${p} are −∞`)
      }
    }
    for (let k = 0; k < K; k++) {
      const row = (b * K + k) * HW
      for (let p = 0; p < HW; p++) lw[row + p] -= shift[pixels + p]
    }
  }
  return { lw, shift }
}

/**
 * Golden `logweights_effective` from {@link kernelLogweights}: log_softmax over K when T < 1 (the
 * shifted values already have max 0), else the shift added back (dropout −∞ stays −∞).
 */
function effectiveFromKernel(
  kernel: { lw: Float64Array; shift: Float64Array },
  temperature: number,
  out: FloatArray,
  B: number,
  K: number,
  HW: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < HW; p++) {
      let offset = kernel.shift[b * HW + p]
      if (temperature < 1) {
        let sum = 0
        for (let k = 0; k < K; k++) sum += Math.exp(kernel.lw[(b * K + k) * HW + p])
        offset = -Math.log(sum)
      }
      for (let k = 0; k < K; k++) {
        const i = (b * K + k) * HW + p
        out[i] = kernel.lw[i] + offset
      }
    }
  }
}

/** The wasm kernel's data (group-major, see wasm/gm-wasm.ts), packed by the kernel's own gm_pack. */
function packGroupMajor(
  wasm: GmWasmState,
  meansU: Float32Array,
  xSrc: Float32Array,
  lwShifted: Float64Array,
  sigmaSrcs: Float64Array,
): void {
  let finiteCheck = 0
  for (let b = 0; b < wasm.B; b++) {
    finiteCheck += wasm.pack(b, sigmaSrcs[b], meansU, xSrc, lwShifted)
  }
  checkFinite(finiteCheck)
}

/**
 * (B,K) dropout mask with the golden rule applied: a row where all K are dropped is ignored.
 * Shared with the WebGPU twin so both paths apply one rule.
 */
export function effectiveDropoutMask(
  mask: ArrayLike<boolean> | undefined,
  B: number,
  K: number,
): Uint8Array | null {
  if (mask == null) return null
  if (typeof mask.length !== 'number' || mask.length !== B * K) {
    throw new PolicyShapeError(
      `options.dropoutMask must have B·K = ${B * K} entries, got ${mask.length}`,
    )
  }
  const out = new Uint8Array(B * K)
  for (let b = 0; b < B; b++) {
    let all = true
    for (let k = 0; k < K; k++) if (!mask[b * K + k]) all = false
    if (!all) for (let k = 0; k < K; k++) out[b * K + k] = mask[b * K + k] ? 1 : 0
  }
  return out
}
