/**
 * @module types
 * The contract of the policy module (ARCHITECTURE.md §3). Worker, backend, SDK and the WebGPU twin code against
 * these types; shapes and conventions are exactly those of fixtures/golden/README.md (batch first, σ
 * convention x_σ = (1 − σ)·x0 + σ·ε, u = ε − x0, raw time τ with shift).
 */

/** Float64Array is the reference path (golden `float64` tolerance); Float32Array the fast path. */
export type FloatArray = Float32Array | Float64Array

/** Latent layout (B, C, H, W), row-major, last index fastest. */
export interface LatentShape {
  batch: number
  channels: number
  height: number
  width: number
}

/**
 * GM network output, in u-space at the source state (x_src, σ_src).
 * meansU (B,K,C,H,W); logweights (B,K,1,H,W); logstds (B) — the (B,1,1,1,1) tensor flattened.
 */
export interface GmOutput<T extends FloatArray = FloatArray> {
  type: 'gm'
  k: number
  meansU: T
  logweights: T
  logstds: T
}

/** DX network output: gridU (B,N,C,H,W) in u-space at the source state. Node 0 = segment end. */
export interface DxOutput<T extends FloatArray = FloatArray> {
  type: 'dx'
  n: number
  gridU: T
}

export type PolicyOutput<T extends FloatArray = FloatArray> = GmOutput<T> | DxOutput<T>

/** A policy built once per NFE segment; evaluating it needs no network call. */
export interface Policy<T extends FloatArray = FloatArray> {
  readonly shape: LatentShape
  /** Writes u = π(x_t, σ_t) into `out` (same layout as x) and returns it. σ_t has one value per sample. */
  velocity(out: T, xT: T, sigmaT: ArrayLike<number>): T
  /**
   * Optional fused Euler substep, in place: x ← x + π(x, σ_t)·(σ_next − σ_t), per sample. Policies that
   * provide it save a pass over x per substep; `rollout` falls back to `velocity` + axpy otherwise.
   */
  step?(x: T, sigmaT: ArrayLike<number>, sigmaNext: ArrayLike<number>): T
  /**
   * Optional fast path for rollouts that start at the policy's own source state: returns a
   * {@link PolicyRollout} when `x` equals x_src bit for bit, else null. The GM policy uses it to
   * integrate in the (K+1)-dimensional span of x_src and the K means instead of in C dimensions.
   */
  startRollout?(x: T): PolicyRollout<T> | null
  /**
   * Optional: hands the policy's buffers to the next policy of the same shape (the wasm GM kernel's
   * memory, whose fresh pages cost more to fault in than the segment's packing). Afterwards every
   * method throws. Unreleased policies are simply garbage-collected.
   */
  release?(): void
}

/** A rollout in progress from the policy's source state (see {@link Policy.startRollout}). */
export interface PolicyRollout<T extends FloatArray = FloatArray> {
  /** One Euler substep per sample from σ_t to σ_next (σ_next = σ_t leaves a sample unchanged). */
  step(sigmaT: ArrayLike<number>, sigmaNext: ArrayLike<number>): void
  /** Writes the current state (B,C,H,W) into `x`. */
  write(x: T): T
}

export interface GmPolicyOptions {
  /** @default 1e-4 (piFlow's GMFlowPolicy eps) */
  eps?: number
  /** T < 1 sharpens the mixture (golden §3 gm_velocity step 3). @default 1 */
  temperature?: number
  /** (B,K) booleans, true = drop; a row with all K true is ignored. */
  dropoutMask?: ArrayLike<boolean>
  /**
   * Kernel for Float32Array tensors: `wasm` (SIMD, float32 arithmetic), `js` (float64 arithmetic), or
   * `auto` = the process-wide choice of `configureGmKernel` (default: wasm where available).
   * Float64Array policies always use `js`. @default 'auto'
   */
  kernel?: 'auto' | 'js' | 'wasm'
}

export interface DxPolicyOptions {
  segmentSize: number
  shift: number
  mode: 'grid' | 'polynomial'
  /** @default 1e-4 */
  eps?: number
}

/** Inputs of the NFE schedule (golden §3 `schedule`). */
export interface ScheduleOptions {
  nfe: number
  /** @default 1 */
  shift?: number
  /** fs in the paper's FlowMapSDE scheduler. @default 1 */
  finalStepSizeScale?: number
  /** Substeps per unit of raw time. @default 128 */
  totalSubsteps?: number
  /** @default 0 */
  h?: number
  /** @default 1000 */
  numTrainTimesteps?: number
  dynamicShift?: {
    seqLen: number
    baseSeqLen: number
    maxSeqLen: number
    baseLogshift: number
    maxLogshift: number
  }
}

export interface ScheduleStep {
  rawSrc: number
  rawDst: number
  sigmaSrc: number
  sigmaNext: number
  sigmaDst: number
  m: number
  timestep: number
  timestepDst: number
  numSubsteps: number
  /** auto temperature for this step (1 for the last step) */
  temperature: number
}

export interface Schedule {
  nfe: number
  shiftUsed: number
  totalSubsteps: number
  autoTemperature: number
  /** Σ numSubsteps over the steps */
  totalSubstepsUsed: number
  steps: ScheduleStep[]
}

/** Progress reported after every NFE segment of `sample`. */
export interface StepInfo<T extends FloatArray = FloatArray> {
  step: number
  nfe: number
  sigmaSrc: number
  sigmaDst: number
  numSubsteps: number
  /** the state after this segment (a view of the sampler's buffer: copy it to keep it) */
  x: T
}

/** DX policy parameters of a segment. */
export interface DxSegmentOptions {
  segmentSize: number
  shift: number
  mode: 'grid' | 'polynomial'
}

/** Everything an integrator needs besides the network output and the state. */
export interface SegmentSpec {
  shape: LatentShape
  sigmaSrc: number
  sigmaDst: number
  shift: number
  totalSubsteps: number
  eps: number
  /** GM temperature of this segment (1 = none); ignored by DX */
  temperature: number
  /** required for DX outputs */
  dx?: DxSegmentOptions
}

/** "Build the policy from a network output at (x, σ_src) and roll it to σ_dst." */
export interface SegmentIntegrator<T extends FloatArray = FloatArray> {
  readonly name: 'cpu' | 'webgpu'
  /** `x` holds x_src on entry and x_dst on return. */
  integrate(
    output: PolicyOutput<T>,
    x: T,
    segment: SegmentSpec,
    signal?: AbortSignal,
  ): Promise<{ numSubsteps: number }>
}
