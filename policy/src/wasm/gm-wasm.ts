/**
 * @module wasm/gm-wasm
 * The Float32Array fast path of the GM policy: the substep kernel of gm-kernel.wat (f32x4 SIMD, one lane
 * per pixel) over the policy's data in its own WebAssembly memory.
 *
 * Which kernel runs is a process-wide choice ({@link configureGmKernel}), like a tensor library's
 * backend: `auto` takes WebAssembly where the runtime can compile it and falls back to the JS kernel
 * (gm.ts) where it cannot — Cloudflare Workers refuse to compile wasm from bytes at run time, so a
 * Worker passes the module its bundler imported. Float64Array policies always run the JS kernel: it is
 * the float64 reference.
 *
 * Data layout ("group-major", four pixels per group; see the .wat header): every per-pixel tensor with
 * P planes per sample is stored as [b][group][plane][4 lanes], so one group's data is contiguous;
 * channels are padded with zeros to a multiple of 4 (`Cp`) so the kernel's channel loops are unrolled.
 */
import { PolicyOptionError } from '../errors.ts'
import { WASM_BASE64 } from './gm-kernel.wasm.ts'

/** Which GM kernel Float32Array policies use. */
export type GmKernelChoice = 'auto' | 'js' | 'wasm'

interface KernelConfig {
  kernel: GmKernelChoice
  module: WebAssembly.Module | null | undefined // undefined = not compiled yet, null = unavailable
}

const config: KernelConfig = { kernel: 'auto', module: undefined }

/**
 * Picks the GM kernel for Float32Array policies created from now on (default `auto`). `module` hands in
 * a precompiled gm-kernel module, for runtimes that only accept bundled wasm (Cloudflare Workers).
 * @throws {PolicyOptionError} for `wasm` when this runtime cannot compile or instantiate the kernel
 * @example
 * ```ts
 * configureGmKernel({ kernel: 'js' }) // e.g. to compare against the JS kernel
 * ```
 */
export function configureGmKernel(options: {
  kernel?: GmKernelChoice
  module?: WebAssembly.Module
}): void {
  const kernel = options.kernel ?? config.kernel
  if (kernel !== 'auto' && kernel !== 'js' && kernel !== 'wasm') {
    throw new PolicyOptionError(`kernel must be 'auto', 'js' or 'wasm', got ${String(kernel)}`)
  }
  if (options.module !== undefined) config.module = options.module
  config.kernel = kernel
  if (kernel === 'wasm' && gmWasmModule() === null) {
    throw new PolicyOptionError('the WebAssembly GM kernel is not available in this runtime')
  }
}

/** The kernel a new Float32Array policy gets: `wasm` when chosen (or `auto`) and available. */
export function activeGmKernel(requested: GmKernelChoice = config.kernel): 'js' | 'wasm' {
  if (requested === 'js') return 'js'
  if (gmWasmModule() !== null) return 'wasm'
  if (requested === 'wasm') {
    throw new PolicyOptionError('the WebAssembly GM kernel is not available in this runtime')
  }
  return 'js'
}

/** The compiled kernel module, or null where WebAssembly (with SIMD) cannot be compiled here. */
function gmWasmModule(): WebAssembly.Module | null {
  if (config.module === undefined) config.module = compileKernel()
  return config.module
}

// Cloudflare's types declare WebAssembly.Module abstract: Workers cannot compile at run time.
type ModuleConstructor = new (bytes: BufferSource) => WebAssembly.Module

function compileKernel(): WebAssembly.Module | null {
  try {
    const bytes = Uint8Array.from(atob(WASM_BASE64), (ch) => ch.charCodeAt(0))
    // validate() is false without SIMD support; the constructor throws where code generation is
    // disallowed (Workers). Synchronous compile is fine in browsers too: the module is ~1 KB (< 4 KB).
    if (!WebAssembly.validate(bytes)) return null
    return new (WebAssembly.Module as unknown as ModuleConstructor)(bytes)
  } catch {
    return null
  }
}

type GmPack = (
  means: number,
  lwsq: number,
  xsrc: number,
  stageM: number,
  stageLw: number,
  stageX: number,
  K: number,
  C: number,
  Cp: number,
  groups: number,
  sigma: number,
) => number

/** Per-sample scalars of one kernel call (the .wat header's names). */
export interface GmKernelScalars {
  alpha: number
  beta: number
  halfZeta: number
  invD: number
  /** log2(e)/D: the kernel's softmax is base 2 (lw is stored times log2(e)) */
  invDLog2: number
  variance: number
  /** out = a·x + b·(x − x0) */
  a: number
  b: number
}

/** Where the kernel reads a query from and writes its result. */
const Region = { State: 0, QueryIn: 1, QueryOut: 2 } as const
type Region = (typeof Region)[keyof typeof Region]

export { Region as GmWasmRegion }

type GmStep = (
  means: number,
  lwsq: number,
  xsrc: number,
  xin: number,
  out: number,
  wout: number,
  scratch: number,
  K: number,
  C: number,
  groups: number,
  alpha: number,
  beta: number,
  halfZeta: number,
  invD: number,
  invDLog2: number,
  variance: number,
  a: number,
  b: number,
) => void

/** Released states kept for reuse: two cover a sampler (one live policy at a time) plus a spare. */
const POOL_STATES = 2
const POOL_BYTES = 256 * 1024 * 1024
const pool: GmWasmState[] = []

/**
 * A GM policy's data in wasm memory and the kernel over it. Sizes are fixed at creation, so the memory
 * never grows and the views stay valid.
 */
export class GmWasmState {
  readonly B: number
  readonly K: number
  readonly C: number
  /** C padded to a multiple of 4: the kernel's channel count */
  readonly Cp: number
  readonly HW: number
  /** pixel groups per sample, ⌈HW/4⌉ (pad lanes hold zeros: finite, never read back) */
  readonly groups: number
  /** the whole memory as floats */
  readonly f32: Float32Array
  // float offsets of each region's sample 0; per-sample strides below
  readonly means: number
  readonly lwsq: number
  readonly xsrc: number
  private readonly regions: number[]
  private readonly weights: number
  private readonly scratch: number
  private readonly stageM: number
  private readonly stageLw: number
  private readonly stageX: number
  private readonly step: GmStep
  private readonly packFn: GmPack

  /**
   * A state for these sizes: a released one from the pool (zeroed) or a new one. Returns null when the
   * sizes do not fit a 32-bit wasm memory (the JS kernel then serves).
   */
  static create(B: number, K: number, C: number, HW: number): GmWasmState | null {
    const module = gmWasmModule()
    if (module === null) return null
    const pooled = pool.findIndex((s) => s.B === B && s.K === K && s.C === C && s.HW === HW)
    if (pooled >= 0) {
      const state = pool.splice(pooled, 1)[0] as GmWasmState
      // pad lanes and channels must start at 0 (finite) as in a fresh memory; pages are already mapped
      state.f32.fill(0)
      return state
    }
    const groups = Math.ceil(HW / 4)
    const Cp = Math.ceil(C / 4) * 4
    const perSample = groups * 4 * (K * Cp + 2 * K + 4 * Cp + K)
    const staging = groups * 4 * (K * C + K + C) // planar inputs of one sample, for gm_pack
    const floats = B * perSample + staging + 4 * (Cp + K)
    if (floats * 4 > 2 ** 31) return null
    return new GmWasmState(module, B, K, C, HW, groups, floats)
  }

  private constructor(
    module: WebAssembly.Module,
    B: number,
    K: number,
    C: number,
    HW: number,
    groups: number,
    floats: number,
  ) {
    this.B = B
    this.K = K
    this.C = C
    this.Cp = Math.ceil(C / 4) * 4
    const Cp = this.Cp
    this.HW = HW
    this.groups = groups
    const memory = new WebAssembly.Memory({ initial: Math.ceil((floats * 4) / 65536) })
    const instance = new WebAssembly.Instance(module, { env: { memory } })
    this.step = instance.exports['gm_step'] as GmStep
    this.packFn = instance.exports['gm_pack'] as GmPack
    this.f32 = new Float32Array(memory.buffer)
    const lanes = B * groups * 4
    let at = 0
    const take = (planes: number) => {
      const start = at
      at += lanes * planes
      return start
    }
    this.means = take(K * Cp)
    this.lwsq = take(2 * K)
    this.xsrc = take(Cp)
    this.regions = [take(Cp), take(Cp), take(Cp)]
    this.weights = take(K)
    const plane = groups * 4 // staging holds one sample: planes of `plane` floats
    this.stageM = at
    this.stageLw = this.stageM + K * C * plane
    this.stageX = this.stageLw + K * plane
    this.scratch = this.stageX + C * plane
  }

  /**
   * Returns this state to the pool for the next policy of the same sizes (the caller must not use it
   * again). Faulting in fresh pages was ~65 % of a segment's build at 32×32 (414 → 142 µs reused); the
   * pool keeps the last {@link POOL_STATES} states up to {@link POOL_BYTES} in total.
   */
  release(): void {
    if (pool.includes(this) || this.f32.byteLength > POOL_BYTES) return
    pool.push(this)
    let bytes = pool.reduce((n, s) => n + s.f32.byteLength, 0)
    while (pool.length > POOL_STATES || bytes > POOL_BYTES) {
      bytes -= (pool.shift() as GmWasmState).f32.byteLength
    }
  }

  /**
   * Fills sample `b`'s segment constants (means_x0 = x_src − σ·means_u, log-weights, |m|², x_src) from
   * planar tensors: staged with bulk copies, then rearranged by gm_pack. `lw` are the kernel's
   * log-weights (any per-pixel shift; −∞ = dropped). Returns Σ|m|² for the caller's finiteness check.
   */
  pack(
    b: number,
    sigma: number,
    meansU: Float32Array,
    xSrc: Float32Array,
    lw: Float64Array,
  ): number {
    const { K, C, Cp, groups } = this
    const lanes = groups * 4
    this.stage(meansU, b * K * C, K * C, this.stageM)
    this.stage(lw, b * K, K, this.stageLw)
    this.stage(xSrc, b * C, C, this.stageX)
    const at = (offset: number, planes: number) => 4 * (offset + b * lanes * planes)
    return this.packFn(
      at(this.means, K * Cp),
      at(this.lwsq, 2 * K),
      at(this.xsrc, Cp),
      4 * this.stageM,
      4 * this.stageLw,
      4 * this.stageX,
      K,
      C,
      Cp,
      groups,
      sigma,
    )
  }

  /** Planes first…first+count of a planar tensor → staging at `to`, each padded with zeros to 4·groups. */
  private stage(src: Float32Array | Float64Array, first: number, count: number, to: number): void {
    const { HW } = this
    const lanes = this.groups * 4
    for (let j = 0; j < count; j++) {
      const dst = to + j * lanes
      this.f32.set(src.subarray((first + j) * HW, (first + j + 1) * HW), dst)
      if (lanes > HW) this.f32.fill(0, dst + HW, dst + lanes)
    }
  }

  /** Copies a planar (B,C,H,W) tensor into a region. */
  load(region: Region, x: ArrayLike<number>): void {
    toGroupMajor(x, this.f32, this.regions[region], this.B, this.C, this.HW, this.Cp)
  }

  /** Copies a region out as a planar (B,C,H,W) tensor. */
  store(region: Region, out: Float32Array): Float32Array {
    return fromGroupMajor(this.f32, this.regions[region], out, this.B, this.C, this.HW, this.Cp)
  }

  /**
   * One kernel pass over sample `b`: reads region `input`, writes region `output` (may be the same),
   * and the posterior weights (B,K,1,H,W) into `weightsOut` when given.
   */
  run(
    b: number,
    input: Region,
    output: Region,
    s: GmKernelScalars,
    weightsOut?: Float32Array,
  ): void {
    const { K, Cp, groups } = this
    const lanes = groups * 4
    const at = (offset: number, planes: number) => 4 * (offset + b * lanes * planes)
    this.step(
      at(this.means, K * Cp),
      at(this.lwsq, 2 * K),
      at(this.xsrc, Cp),
      at(this.regions[input], Cp),
      at(this.regions[output], Cp),
      weightsOut ? at(this.weights, K) : 0,
      4 * this.scratch,
      K,
      Cp,
      groups,
      s.alpha,
      s.beta,
      s.halfZeta,
      s.invD,
      s.invDLog2,
      s.variance,
      s.a,
      s.b,
    )
    if (weightsOut) {
      const w = this.f32.subarray(this.weights + b * lanes * K, this.weights + (b + 1) * lanes * K)
      fromGroupMajor(
        w,
        0,
        weightsOut.subarray(b * K * this.HW, (b + 1) * K * this.HW),
        1,
        K,
        this.HW,
      )
    }
  }
}

/**
 * Planar [b][plane][HW] → group-major [b][group][plane][4] at float offset `at` of `dst`, with
 * `stride` ≥ `planes` planes per group (the extra ones are padding, left untouched).
 */
export function toGroupMajor(
  src: ArrayLike<number>,
  dst: Float32Array,
  at: number,
  B: number,
  planes: number,
  HW: number,
  stride = planes,
): void {
  const lanes = Math.ceil(HW / 4) * 4
  for (let b = 0; b < B; b++) {
    const base = at + b * lanes * stride
    for (let j = 0; j < planes; j++) {
      const s = (b * planes + j) * HW
      for (let p = 0; p < HW; p++) dst[base + (p >> 2) * stride * 4 + j * 4 + (p & 3)] = src[s + p]
    }
  }
}

/** Group-major → planar, the inverse of {@link toGroupMajor}. */
export function fromGroupMajor<T extends Float32Array>(
  src: Float32Array,
  at: number,
  out: T,
  B: number,
  planes: number,
  HW: number,
  stride = planes,
): T {
  const lanes = Math.ceil(HW / 4) * 4
  for (let b = 0; b < B; b++) {
    const base = at + b * lanes * stride
    for (let j = 0; j < planes; j++) {
      const o = (b * planes + j) * HW
      for (let p = 0; p < HW; p++) out[o + p] = src[base + (p >> 2) * stride * 4 + j * 4 + (p & 3)]
    }
  }
  return out
}
