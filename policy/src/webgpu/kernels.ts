/// <reference types="@webgpu/types" />
/**
 * @module webgpu/kernels
 * Encodes the GM and DX kernels onto a caller's GPUDevice: pipeline cache, a pool of scratch buffers
 * reused across segments, bounds checks against the device's limits (before anything is allocated),
 * and error scopes that turn GPU validation / out-of-memory errors into {@link PolicyDeviceError}.
 * Internal: the public surface is integrator.ts and evaluator.ts.
 */
import { PolicyShapeError } from '../errors.ts'
import { MAX_WORKGROUPS_PER_DIMENSION, WORKGROUP_SIZE } from './common.wgsl.ts'
import { DX_BINDING, DX_MODE, DX_PARAMS_BYTES, DX_WGSL } from './dx.wgsl.ts'
import { PolicyDeviceError } from './errors.ts'
import { GM_BINDING, GM_PARAMS_BYTES, gmWgsl } from './gm.wgsl.ts'

// GPUBufferUsage / GPUMapMode values from the WebGPU spec, inlined so the module needs no globals
// (Node's `webgpu` package only installs them on request).
export const USAGE = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
} as const
const MAP_MODE_READ = 0x0001

/** Largest K accepted (as the CPU reference). */
export const MAX_GM_COMPONENTS = 4096

/** Largest C the GM kernel accepts: a thread keeps a few C-sized arrays in registers. */
export const MAX_GM_CHANNELS = 128

/** Element counts of one policy problem. `pixels` = H·W. */
export interface Dims {
  batch: number
  channels: number
  pixels: number
}

/** GPU buffers holding one GM network output (f32, layouts as in golden §3). */
export interface GmBuffers {
  k: number
  meansU: GPUBuffer
  logweights: GPUBuffer
  logstds: GPUBuffer
}

/** GPU buffer holding one DX network output: grid_u (B, N, C, H, W) f32. */
export interface DxBuffers {
  n: number
  gridU: GPUBuffer
}

/** What the last kernel of an encode does: roll x in place, or write u / x0_hat (/ weights) to `out`. */
export type KernelMode = 'rollout' | 'velocity'

interface GmEncode extends Dims {
  policy: GmBuffers
  /** x_src for the prepare passes; also the state a rollout updates in place */
  x: GPUBuffer
  /** x_t of a velocity query (default: x) */
  xQuery?: GPUBuffer
  scalars: Float32Array
  numSubsteps: number
  eps: number
  temperature: number
  mode: KernelMode
}

interface DxEncode extends Dims {
  policy: DxBuffers
  /** x_src for the prepare pass; also the state a rollout updates in place */
  x: GPUBuffer
  /** x_t of a velocity query (default: x) */
  xQuery?: GPUBuffer
  scalars: Float32Array
  numSubsteps: number
  dxMode: 'grid' | 'polynomial'
  mode: KernelMode
}

/** Scratch buffers of a GM encode (exposed so the evaluator can read intermediates back). */
export interface GmScratch {
  meansX0: GPUBuffer
  logweightsEff: GPUBuffer
  varX0: GPUBuffer
  out: GPUBuffer | undefined
}

export interface DxScratch {
  nodes: GPUBuffer
  out: GPUBuffer | undefined
}

/** Bytes of the half-packed means_x0: two channels per u32. */
export const halfMeansBytes = (batch: number, k: number, channels: number, pixels: number) =>
  batch * k * Math.ceil(channels / 2) * pixels * 4

/**
 * Pipelines and scratch buffers for one device. Scratch buffers are shared between calls, so callers
 * wrap each call in {@link PolicyKernels.exclusive}.
 */
export class PolicyKernels {
  readonly device: GPUDevice
  readonly halfMeans: boolean
  readonly #pipelines = new Map<string, GPUComputePipeline>()
  readonly #modules = new Map<string, GPUShaderModule>()
  readonly #buffers = new Map<string, GPUBuffer>()

  /** Why the device was lost, once it is (a lost device accepts work silently and does nothing). */
  #lost: string | undefined

  constructor(device: GPUDevice, halfMeans: boolean) {
    this.device = device
    this.halfMeans = halfMeans
    device.lost?.then((info) => {
      this.#lost = `${info.reason}${info.message ? `: ${info.message}` : ''}`
    })
  }

  #tail: Promise<unknown> = Promise.resolve()

  /** Runs `work` after every earlier exclusive call settled: calls share the scratch buffers. */
  exclusive<R>(work: () => Promise<R>): Promise<R> {
    const run = this.#tail.then(work, work)
    this.#tail = run.catch(() => undefined)
    return run
  }

  /** Releases every scratch buffer (pipelines are garbage-collected with the object). */
  destroy(): void {
    for (const buffer of this.#buffers.values()) buffer.destroy()
    this.#buffers.clear()
  }

  /** Throws PolicyShapeError when the GM kernel cannot hold C channels per thread. */
  checkGmChannels(channels: number): void {
    if (channels > MAX_GM_CHANNELS) {
      throw new PolicyShapeError(
        `the WebGPU GM kernel supports up to ${MAX_GM_CHANNELS} channels, got ${channels}`,
      )
    }
  }

  /** Throws PolicyShapeError when a buffer of `bytes` cannot be bound as storage on this device. */
  checkStorageSize(name: string, bytes: number): void {
    const { maxStorageBufferBindingSize, maxBufferSize } = this.device.limits
    const max = Math.min(maxStorageBufferBindingSize, maxBufferSize)
    if (bytes > max) {
      throw new PolicyShapeError(
        `${name} needs ${bytes} bytes, over this device's storage buffer limit of ${max} bytes`,
      )
    }
  }

  /** Throws PolicyShapeError unless a caller's buffer is usable as `bytes` of storage input. */
  checkInputBuffer(name: string, buffer: GPUBuffer, bytes: number): void {
    if (buffer == null || typeof buffer.size !== 'number') {
      throw new PolicyShapeError(`${name} must be a GPUBuffer`)
    }
    if (buffer.size < bytes) {
      throw new PolicyShapeError(`${name} must hold at least ${bytes} bytes, got ${buffer.size}`)
    }
    if ((buffer.usage & USAGE.STORAGE) === 0) {
      throw new PolicyShapeError(`${name} must be created with GPUBufferUsage.STORAGE`)
    }
  }

  /** A pooled scratch buffer of at least `bytes` (4-byte multiple, ≥ 16). */
  scratch(name: string, bytes: number, usage: number): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16)
    const existing = this.#buffers.get(name)
    if (existing && existing.size >= size && existing.usage === usage) return existing
    existing?.destroy()
    const buffer = this.device.createBuffer({ label: `piflow-policy:${name}`, size, usage })
    this.#buffers.set(name, buffer)
    return buffer
  }

  /** Uploads host data into a pooled storage buffer (readable back when `readBack`). */
  upload(name: string, data: Float32Array | Uint32Array, readBack = false): GPUBuffer {
    const usage = USAGE.STORAGE | USAGE.COPY_DST | (readBack ? USAGE.COPY_SRC : 0)
    const buffer = this.scratch(name, data.byteLength, usage)
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
    return buffer
  }

  #pipeline(module: string, code: () => string, entry: string): GPUComputePipeline {
    const key = `${module}:${entry}`
    let pipeline = this.#pipelines.get(key)
    if (!pipeline) {
      let shader = this.#modules.get(module)
      if (!shader) {
        shader = this.device.createShaderModule({ label: `piflow-policy:${module}`, code: code() })
        this.#modules.set(module, shader)
      }
      pipeline = this.device.createComputePipeline({
        label: `piflow-policy:${key}`,
        layout: 'auto',
        compute: { module: shader, entryPoint: entry },
      })
      this.#pipelines.set(key, pipeline)
    }
    return pipeline
  }

  #dispatch(
    pass: GPUComputePassEncoder,
    pipeline: GPUComputePipeline,
    bindings: Record<number, GPUBuffer>,
    threads: number,
  ): void {
    const entries = Object.entries(bindings).map(([binding, buffer]) => ({
      binding: Number(binding),
      resource: { buffer },
    }))
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries })
    pass.setPipeline(pipeline)
    pass.setBindGroup(0, group)
    const groups = Math.ceil(threads / WORKGROUP_SIZE)
    const x = Math.min(groups, MAX_WORKGROUPS_PER_DIMENSION)
    pass.dispatchWorkgroups(x, Math.ceil(groups / x))
  }

  /**
   * Encodes a whole GM segment (prepare + all substeps, or prepare + one velocity query) into
   * `encoder`. Host tables are written to the queue now, so they land before the encoder's submit.
   */
  encodeGm(encoder: GPUCommandEncoder, job: GmEncode): GmScratch {
    const { batch, channels, pixels, policy, mode } = job
    const k = policy.k
    // One compiled variant per channel count (models use one or two: 4, 16 …).
    const moduleKey = `gm-c${channels}${this.halfMeans ? '-half' : ''}`
    const code = () => gmWgsl({ channels, halfMeans: this.halfMeans })

    const params = this.scratch('gm-params', GM_PARAMS_BYTES, USAGE.UNIFORM | USAGE.COPY_DST)
    const header = new ArrayBuffer(GM_PARAMS_BYTES)
    new Uint32Array(header, 0, 6).set([batch, k, channels, pixels, job.numSubsteps, 0])
    new Float32Array(header, 24, 2).set([job.eps, job.temperature])
    this.device.queue.writeBuffer(params, 0, header)

    const elements = batch * channels * pixels
    const meansBytes = this.halfMeans
      ? halfMeansBytes(batch, k, channels, pixels)
      : batch * k * channels * pixels * 4
    const rw = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST
    const scratch: GmScratch = {
      meansX0: this.scratch('gm-means-x0', meansBytes, rw),
      logweightsEff: this.scratch('gm-logweights-eff', batch * k * pixels * 4, rw),
      varX0: this.scratch('gm-var-x0', batch * 4, rw),
      out:
        mode === 'velocity'
          ? this.scratch('gm-out', (2 * elements + batch * k * pixels) * 4, rw)
          : undefined,
    }
    const nuSrc = this.scratch('gm-nu-src', elements * 4, rw)
    const scalars = this.upload('gm-scalars', job.scalars)
    const B = GM_BINDING
    const common = { [B.params]: params, [B.scalars]: scalars, [B.x]: job.x }
    const state = {
      ...common,
      [B.meansX0]: scratch.meansX0,
      [B.logweightsEff]: scratch.logweightsEff,
      [B.nuSrc]: nuSrc,
      [B.varX0]: scratch.varX0,
    }

    const pass = encoder.beginComputePass({ label: `piflow-policy:gm-${mode}` })
    const meanThreads = this.halfMeans
      ? batch * k * Math.ceil(channels / 2) * pixels
      : batch * k * channels * pixels
    this.#dispatch(
      pass,
      this.#pipeline(moduleKey, code, 'prepareMeans'),
      { ...common, [B.meansU]: policy.meansU, [B.meansX0]: scratch.meansX0 },
      meanThreads,
    )
    this.#dispatch(
      pass,
      this.#pipeline(moduleKey, code, 'preparePixels'),
      {
        ...common,
        [B.logweights]: policy.logweights,
        [B.logstds]: policy.logstds,
        [B.logweightsEff]: scratch.logweightsEff,
        [B.nuSrc]: nuSrc,
        [B.varX0]: scratch.varX0,
      },
      batch * pixels,
    )
    if (mode === 'rollout') {
      this.#dispatch(pass, this.#pipeline(moduleKey, code, 'rollout'), state, batch * pixels)
    } else {
      this.#dispatch(
        pass,
        this.#pipeline(moduleKey, code, 'velocity'),
        { ...state, [B.x]: job.xQuery ?? job.x, [B.out]: scratch.out! },
        batch * pixels,
      )
    }
    pass.end()
    return scratch
  }

  /** Encodes a whole DX segment (nodes + all substeps, or nodes + one velocity query). */
  encodeDx(encoder: GPUCommandEncoder, job: DxEncode): DxScratch {
    const { batch, channels, pixels, policy, mode } = job
    const params = this.scratch('dx-params', DX_PARAMS_BYTES, USAGE.UNIFORM | USAGE.COPY_DST)
    const header = new Uint32Array(DX_PARAMS_BYTES / 4)
    header.set([batch, policy.n, channels, pixels, job.numSubsteps, DX_MODE[job.dxMode]])
    this.device.queue.writeBuffer(params, 0, header)

    const elements = batch * channels * pixels
    const rw = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST
    const scratch: DxScratch = {
      nodes: this.scratch('dx-nodes', elements * policy.n * 4, rw),
      out: mode === 'velocity' ? this.scratch('dx-out', 2 * elements * 4, rw) : undefined,
    }
    const scalars = this.upload('dx-scalars', job.scalars)
    const B = DX_BINDING
    const common = {
      [B.params]: params,
      [B.scalars]: scalars,
      [B.x]: job.x,
      [B.nodes]: scratch.nodes,
    }
    const code = () => DX_WGSL

    const pass = encoder.beginComputePass({ label: `piflow-policy:dx-${mode}` })
    this.#dispatch(
      pass,
      this.#pipeline('dx', code, 'prepareNodes'),
      { ...common, [B.gridU]: policy.gridU },
      elements,
    )
    const last =
      mode === 'rollout' ? common : { ...common, [B.x]: job.xQuery ?? job.x, [B.out]: scratch.out! }
    this.#dispatch(pass, this.#pipeline('dx', code, mode), last, elements)
    pass.end()
    return scratch
  }

  /**
   * Encodes with `encode`, copies the buffers it returns into one staging buffer, submits everything
   * as ONE queue submission inside validation + out-of-memory error scopes, then maps the staging
   * buffer and returns the bytes of each read in order (none when `encode` returns no reads, e.g.
   * when the caller keeps the state on the GPU).
   */
  async run(
    label: string,
    encode: (encoder: GPUCommandEncoder) => { buffer: GPUBuffer; bytes: number }[],
    signal?: AbortSignal,
  ): Promise<ArrayBuffer[]> {
    const { device } = this
    if (this.#lost !== undefined)
      throw new PolicyDeviceError(`the GPUDevice is lost (${this.#lost})`)
    device.pushErrorScope('validation')
    device.pushErrorScope('out-of-memory')
    let reads: { buffer: GPUBuffer; bytes: number }[] = []
    let staging: GPUBuffer | undefined
    let total = 0
    let encodeFailure: { error: unknown } | undefined
    try {
      const encoder = device.createCommandEncoder({ label: `piflow-policy:${label}` })
      reads = encode(encoder)
      total = reads.reduce((sum, r) => sum + r.bytes, 0)
      if (total > 0) staging = this.scratch('staging', total, USAGE.MAP_READ | USAGE.COPY_DST)
      let offset = 0
      for (const { buffer, bytes } of reads) {
        encoder.copyBufferToBuffer(buffer, 0, staging!, offset, bytes)
        offset += bytes
      }
      device.queue.submit([encoder.finish()])
    } catch (error) {
      encodeFailure = { error }
    }
    // Popped on every path so a throw while encoding never leaves scopes pushed on the caller's device.
    const outOfMemory = await device.popErrorScope()
    const validation = await device.popErrorScope()
    if (encodeFailure) throw encodeFailure.error
    const scopeError = validation ?? outOfMemory
    if (scopeError) {
      throw new PolicyDeviceError(`WebGPU rejected the policy kernels: ${scopeError.message}`)
    }
    if (!staging) return []
    signal?.throwIfAborted()
    try {
      await staging.mapAsync(MAP_MODE_READ, 0, total)
    } catch (cause) {
      throw new PolicyDeviceError('reading the policy result back from the GPU failed', { cause })
    }
    const mapped = staging.getMappedRange(0, total)
    const out: ArrayBuffer[] = []
    let offset = 0
    for (const { bytes } of reads) {
      out.push(mapped.slice(offset, offset + bytes))
      offset += bytes
    }
    staging.unmap()
    return out
  }
}
