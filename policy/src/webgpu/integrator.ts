/// <reference types="@webgpu/types" />
/**
 * @module webgpu/integrator
 * The WebGPU twin of the CPU segment integrator (ARCHITECTURE.md §3): "build the policy from a network output
 * at (x, σ_src) and roll it to σ_dst", with the state on the GPU for the whole segment.
 *
 * One segment = ONE queue submission: the per-substep scalars are precomputed on the host (float64,
 * like the CPU reference) into one storage buffer, and a single compute pass runs prepare + all
 * substeps (each thread owns whole pixels, so no substep needs another thread's result and the substep
 * loop lives inside the kernel). `integrate` reads x back once; `integrateBuffers` reads nothing back,
 * so the state can feed the next network forward on the same device.
 */
import {
  PolicyOptionError,
  PolicyShapeError,
  PolicySigmaError,
  PolicyValueError,
} from '../errors.ts'
import { checkShift, checkTotalSubsteps } from '../rollout.ts'
import type {
  DxSegmentOptions,
  LatentShape,
  PolicyOutput,
  SegmentIntegrator,
  SegmentSpec,
} from '../types.ts'
import { checkInt, checkNumber, checkShape, checkSigma } from '../validate.ts'
import {
  type Dims,
  type DxBuffers,
  type GmBuffers,
  halfMeansBytes,
  MAX_GM_COMPONENTS,
  PolicyKernels,
} from './kernels.ts'
import { dxScalars, gmScalars, logweightsForGpu, rolloutPlan, substepSigmas } from './scalars.ts'

/** Options of {@link createWebGpuIntegrator}. */
export interface WebGpuIntegratorOptions {
  /**
   * Store the GM means (the K·C·H·W bulk of a segment) as half floats: half the memory and bandwidth,
   * at a looser accuracy (see README.md). Uses core WGSL `pack2x16float`, so it works on every adapter,
   * `shader-f16` or not. Log-weights, the state and all arithmetic stay float32.
   * @default false
   */
  f16?: boolean
}

/** A GM network output already on the device: f32 storage buffers, layouts as in golden §3. */
export interface GpuGmOutput {
  type: 'gm'
  k: number
  /** (B,K,C,H,W) */
  meansU: GPUBuffer
  /** (B,K,1,H,W) */
  logweights: GPUBuffer
  /** (B) */
  logstds: GPUBuffer
}

/** A DX network output already on the device: grid_u (B,N,C,H,W) f32 storage buffer. */
export interface GpuDxOutput {
  type: 'dx'
  n: number
  gridU: GPUBuffer
}

export type GpuPolicyOutput = GpuGmOutput | GpuDxOutput

/** The WebGPU segment integrator. Calls on one integrator run one after another. */
export interface WebGpuIntegrator extends SegmentIntegrator<Float32Array> {
  readonly name: 'webgpu'
  readonly device: GPUDevice
  /** whether GM means are stored as half floats */
  readonly f16: boolean
  /**
   * Uploads the output and x, runs the segment in one submission and reads x_dst back into `x`.
   * @throws {PolicyError} on invalid input (before touching the GPU); PolicyDeviceError when the
   * device rejects the work; the signal's reason when aborted (the GPU work itself cannot be cancelled)
   */
  integrate(
    output: PolicyOutput<Float32Array>,
    x: Float32Array,
    segment: SegmentSpec,
    signal?: AbortSignal,
  ): Promise<{ numSubsteps: number }>
  /**
   * Same on buffers that already live on this device: `x` (B,C,H,W) f32 holds x_src and is updated
   * in place to x_dst; nothing is read back. Resolves once the work is submitted and validated; later
   * work on the device's queue (a network forward reading `x`) is ordered after it.
   * Buffers need GPUBufferUsage.STORAGE.
   */
  integrateBuffers(
    output: GpuPolicyOutput,
    x: GPUBuffer,
    segment: SegmentSpec,
    signal?: AbortSignal,
  ): Promise<{ numSubsteps: number }>
  /** Frees the integrator's scratch buffers (the device stays the caller's). */
  destroy(): void
}

/**
 * Creates a WebGPU segment integrator on the caller's device (no global device, so onnxruntime-web's
 * device can be shared).
 *
 * @param device  a GPUDevice with default limits or better
 * @param options `f16` half-float storage of GM means
 * @example
 * ```ts
 * const adapter = await navigator.gpu.requestAdapter()
 * const integrator = createWebGpuIntegrator(await adapter!.requestDevice())
 * const x0 = await sample({ xInit, shape, schedule, forward, integrator })
 * ```
 */
export function createWebGpuIntegrator(
  device: GPUDevice,
  options: WebGpuIntegratorOptions = {},
): WebGpuIntegrator {
  if (device == null || typeof device.createBuffer !== 'function') {
    throw new PolicyOptionError('device must be a GPUDevice')
  }
  const f16 = options.f16 === true
  const kernels = new PolicyKernels(device, f16)

  return {
    name: 'webgpu',
    device,
    f16,

    async integrate(output, x, segment, signal) {
      // Validation and plan run before the queue and before any allocation (errors reject the call).
      const job = planSegment(kernels, describeCpuOutput(output, segment.shape), segment)
      if (!(x instanceof Float32Array) || x.length !== job.elements) {
        throw new PolicyShapeError(`x must be a Float32Array of ${job.elements} elements (B,C,H,W)`)
      }
      checkCpuValues(output)
      const logweights =
        output.type === 'gm'
          ? logweightsForGpu(output.logweights, undefined, job.batch, output.k, job.pixels)
          : undefined
      return kernels.exclusive(async () => {
        signal?.throwIfAborted()
        const [bytes] = await kernels.run(
          'segment',
          (encoder) => {
            const xBuffer = kernels.upload('x', x, true)
            encodeSegment(kernels, encoder, job, uploadOutput(kernels, output, logweights), xBuffer)
            return [{ buffer: xBuffer, bytes: x.byteLength }]
          },
          signal,
        )
        x.set(new Float32Array(bytes))
        return { numSubsteps: job.numSubsteps }
      })
    },

    async integrateBuffers(output, x, segment, signal) {
      const job = planSegment(kernels, describeOutput(output), segment)
      if (job.type === 'gm') {
        const gm = output as GpuGmOutput
        kernels.checkInputBuffer('output.meansU', gm.meansU, job.meansBytes)
        kernels.checkInputBuffer('output.logweights', gm.logweights, job.logweightsBytes)
        kernels.checkInputBuffer('output.logstds', gm.logstds, job.batch * 4)
      } else {
        kernels.checkInputBuffer('output.gridU', (output as GpuDxOutput).gridU, job.gridBytes)
      }
      kernels.checkInputBuffer('x', x, job.elements * 4)
      return kernels.exclusive(async () => {
        signal?.throwIfAborted()
        await kernels.run('segment', (encoder) => {
          encodeSegment(kernels, encoder, job, output, x)
          return []
        })
        return { numSubsteps: job.numSubsteps }
      })
    },

    destroy() {
      kernels.destroy()
    },
  }
}

/** Policy type and size, from either a CPU or a GPU output. */
type OutputInfo = { type: 'gm'; k: number } | { type: 'dx'; n: number }

/** Everything needed to encode one segment, validated. */
type SegmentJob = Dims & {
  elements: number
  numSubsteps: number
  scalars: Float32Array
} & (
    | {
        type: 'gm'
        k: number
        eps: number
        temperature: number
        meansBytes: number
        logweightsBytes: number
      }
    | { type: 'dx'; n: number; dx: DxSegmentOptions; gridBytes: number }
  )

function describeCpuOutput(output: PolicyOutput<Float32Array>, shape: LatentShape): OutputInfo {
  const info = describeOutput(output)
  const size = checkShape(shape)
  const HW = shape.height * shape.width
  const B = shape.batch
  const f32 = (name: string, array: unknown, length: number) => {
    if (!(array instanceof Float32Array) || array.length !== length) {
      throw new PolicyShapeError(`${name} must be a Float32Array of ${length} elements`)
    }
  }
  if (info.type === 'gm') {
    const gm = output as PolicyOutput<Float32Array> & { type: 'gm' }
    f32('output.meansU', gm.meansU, size * info.k)
    f32('output.logweights', gm.logweights, B * info.k * HW)
    f32('output.logstds', gm.logstds, B)
  } else {
    f32(
      'output.gridU',
      (output as PolicyOutput<Float32Array> & { type: 'dx' }).gridU,
      size * info.n,
    )
  }
  return info
}

function describeOutput(output: { type?: unknown; k?: unknown; n?: unknown }): OutputInfo {
  if (output?.type === 'gm') {
    return { type: 'gm', k: checkInt('output.k', output.k, 1, MAX_GM_COMPONENTS) }
  }
  if (output?.type === 'dx') return { type: 'dx', n: checkInt('output.n', output.n, 1, 4096) }
  throw new PolicyOptionError(`unknown policy output type ${String(output?.type)}`)
}

// NaN/∞ in log-stds would silently poison the whole state on the GPU; B values, cheap to check.
function checkCpuValues(output: PolicyOutput<Float32Array>): void {
  if (output.type !== 'gm') return
  for (let b = 0; b < output.logstds.length; b++) {
    if (!Number.isFinite(output.logstds[b])) {
      throw new PolicyValueError(`output.logstds[${b}] is ${output.logstds[b]}`)
    }
  }
}

function planSegment(kernels: PolicyKernels, info: OutputInfo, segment: SegmentSpec): SegmentJob {
  if (segment == null || typeof segment !== 'object') {
    throw new PolicyOptionError('segment must be a SegmentSpec')
  }
  const elements = checkShape(segment.shape)
  const { batch, channels } = segment.shape
  const pixels = segment.shape.height * segment.shape.width
  const sigmaSrc = checkSigma('segment.sigmaSrc', segment.sigmaSrc)
  const sigmaDst = checkSigma('segment.sigmaDst', segment.sigmaDst)
  if (sigmaDst > sigmaSrc) {
    throw new PolicySigmaError(`sigmaDst (${sigmaDst}) must not exceed sigmaSrc (${sigmaSrc})`)
  }
  const shift = checkShift(segment.shift)
  const totalSubsteps = checkTotalSubsteps(segment.totalSubsteps)
  const eps = checkNumber('segment.eps', segment.eps, 0, 1, true)
  const sigmas = substepSigmas(sigmaSrc, sigmaDst, shift, totalSubsteps)
  const plan = rolloutPlan(sigmas, batch, eps)
  const sigmaSrcs = new Float64Array(batch).fill(sigmaSrc)
  const dims = { batch, channels, pixels, elements, numSubsteps: plan.count }
  kernels.checkStorageSize('x', elements * 4)
  if (info.type === 'gm') {
    const temperature = checkNumber(
      'segment.temperature',
      segment.temperature,
      0,
      Number.POSITIVE_INFINITY,
      true,
    )
    kernels.checkGmChannels(channels)
    const meansBytes = elements * info.k * 4
    kernels.checkStorageSize('output.meansU', meansBytes)
    if (kernels.halfMeans) {
      kernels.checkStorageSize('means_x0', halfMeansBytes(batch, info.k, channels, pixels))
    }
    const scalars = gmScalars(sigmaSrcs, plan, eps, temperature)
    kernels.checkStorageSize('substep scalars', scalars.byteLength)
    return {
      ...dims,
      type: 'gm',
      k: info.k,
      eps,
      temperature,
      scalars,
      meansBytes,
      logweightsBytes: batch * info.k * pixels * 4,
    }
  }
  const dx = checkDx(segment.dx)
  const gridBytes = elements * info.n * 4
  kernels.checkStorageSize('output.gridU', gridBytes)
  const scalars = dxScalars(sigmaSrcs, plan, { ...dx, n: info.n, eps })
  kernels.checkStorageSize('substep scalars', scalars.byteLength)
  return { ...dims, type: 'dx', n: info.n, dx, scalars, gridBytes }
}

function checkDx(dx: DxSegmentOptions | undefined): DxSegmentOptions {
  if (dx == null)
    throw new PolicyOptionError('a DX output needs segment.dx {segmentSize, shift, mode}')
  if (dx.mode !== 'grid' && dx.mode !== 'polynomial') {
    throw new PolicyOptionError(
      `segment.dx.mode must be 'grid' or 'polynomial', got ${String(dx.mode)}`,
    )
  }
  return {
    segmentSize: checkNumber('segment.dx.segmentSize', dx.segmentSize, 0, 1),
    shift: checkShift(dx.shift),
    mode: dx.mode,
  }
}

function uploadOutput(
  kernels: PolicyKernels,
  output: PolicyOutput<Float32Array>,
  logweights: Float32Array | undefined,
): GpuPolicyOutput {
  if (output.type === 'gm') {
    return {
      type: 'gm',
      k: output.k,
      meansU: kernels.upload('input-means-u', output.meansU),
      logweights: kernels.upload('input-logweights', logweights ?? output.logweights),
      logstds: kernels.upload('input-logstds', output.logstds),
    }
  }
  return { type: 'dx', n: output.n, gridU: kernels.upload('input-grid-u', output.gridU) }
}

function encodeSegment(
  kernels: PolicyKernels,
  encoder: GPUCommandEncoder,
  job: SegmentJob,
  output: GpuPolicyOutput,
  x: GPUBuffer,
): void {
  const common = {
    batch: job.batch,
    channels: job.channels,
    pixels: job.pixels,
    x,
    scalars: job.scalars,
    numSubsteps: job.numSubsteps,
    mode: 'rollout' as const,
  }
  if (job.type === 'gm') {
    kernels.encodeGm(encoder, {
      ...common,
      policy: output as GmBuffers & GpuGmOutput,
      eps: job.eps,
      temperature: job.temperature,
    })
  } else {
    kernels.encodeDx(encoder, {
      ...common,
      policy: output as DxBuffers & GpuDxOutput,
      dxMode: job.dx.mode,
    })
  }
}
