/// <reference types="@webgpu/types" />
/**
 * @module test/webgpu/properties
 * Behaviour of the WebGPU twin beyond the golden cases, checked on the same device in the same
 * runtimes: one queue submission per segment, the GPU-resident variant, shapes the goldens do not
 * cover (batch > 1 with many workgroups, K not a power of two, odd C for the half-packed means) against
 * the CPU reference, typed errors for bad input, abort, and concurrent calls on one integrator.
 */
import {
  createCpuIntegrator,
  type FloatArray,
  type GmOutput,
  isPolicyError,
  type LatentShape,
  type PolicyOutput,
  randn,
  type SegmentSpec,
} from '@piflow/policy'
import { createWebGpuIntegrator } from '@piflow/policy/webgpu'
import type { Tolerance } from '../conformance/cases.ts'
import { compareClose, type FieldResult } from '../conformance/compare.ts'
import { F16_TOLERANCE, type WebGpuCaseResult } from './run-case.ts'

/** The golden float32 tolerance of rollout-type cases. */
const ROLLOUT_F32: Tolerance = { rtol: 2e-3, atol: 2e-4 }
const STORAGE = 0x80
const COPY_SRC = 0x04
const COPY_DST = 0x08
const MAP_READ = 0x01

type Check = () => Promise<FieldResult[]>

/** Names of the property checks (one result each). */
export const PROPERTY_NAMES = [
  'one-submission-per-segment',
  'gpu-resident-matches-readback',
  'gm-batch2-k3-c5-vs-cpu',
  'gm-half-means-odd-c-vs-cpu',
  'dx-grid-batch2-vs-cpu',
  'dx-polynomial-batch2-vs-cpu',
  'dx-2d-dispatch-vs-cpu',
  'typed-errors',
  'abort-signal',
  'concurrent-calls-serialised',
  // last: it destroys the device
  'lost-device-rejects',
] as const

/** Runs every property check on `device`; each becomes one result of kind `property`. */
export async function runWebGpuProperties(device: GPUDevice): Promise<WebGpuCaseResult[]> {
  const checks: Record<(typeof PROPERTY_NAMES)[number], Check> = {
    'one-submission-per-segment': () => oneSubmission(device),
    'gpu-resident-matches-readback': () => gpuResident(device),
    'gm-batch2-k3-c5-vs-cpu': () => againstCpu(device, gmCase(2, 3, 5, 9, 11, 0.5), false),
    'gm-half-means-odd-c-vs-cpu': () => againstCpu(device, gmCase(2, 3, 5, 9, 11, 0.5), true),
    'dx-grid-batch2-vs-cpu': () => againstCpu(device, dxCase(2, 4, 3, 8, 8, 'grid'), false),
    'dx-polynomial-batch2-vs-cpu': () =>
      againstCpu(device, dxCase(2, 3, 3, 8, 8, 'polynomial'), false),
    // 2049² elements > 65 535 workgroups × 64 threads: the grid spills into the y dimension.
    'dx-2d-dispatch-vs-cpu': () => againstCpu(device, largeDxCase(), false),
    'typed-errors': () => typedErrors(device),
    'abort-signal': () => abort(device),
    'concurrent-calls-serialised': () => concurrent(device),
    'lost-device-rejects': () => lostDevice(device),
  }
  const results: WebGpuCaseResult[] = []
  for (const [name, check] of Object.entries(checks)) {
    let fields: FieldResult[]
    try {
      fields = await check()
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      fields = [{ field: '(run)', ok: false, message }]
    }
    results.push({
      id: `property:${name}`,
      kind: 'property',
      dtype: 'float32',
      ok: fields.length > 0 && fields.every((f) => f.ok),
      fields,
      skipped: [],
      variant: name.includes('half') ? 'f16' : 'f32',
    })
  }
  return results
}

interface Problem {
  shape: LatentShape
  output: PolicyOutput<Float64Array>
  x: Float64Array
  segment: SegmentSpec
}

/** Seeded GM problem: 4-NFE-like first segment (σ 1 → 0.889, shift 3.2, 37 substeps). */
function gmCase(
  batch: number,
  k: number,
  channels: number,
  height: number,
  width: number,
  temperature: number,
): Problem {
  const shape = { batch, channels, height, width }
  const size = batch * channels * height * width
  const logweights = randn(new Float64Array(batch * k * height * width), 11)
  return {
    shape,
    output: {
      type: 'gm',
      k,
      meansU: randn(new Float64Array(size * k), 12),
      logweights,
      logstds: Float64Array.from({ length: batch }, (_, b) => -1 - b),
    },
    x: randn(new Float64Array(size), 13),
    segment: {
      shape,
      sigmaSrc: 1,
      sigmaDst: 0.888888888888889,
      shift: 3.2,
      totalSubsteps: 128,
      eps: 1e-4,
      temperature,
    },
  }
}

function dxCase(
  batch: number,
  n: number,
  channels: number,
  height: number,
  width: number,
  mode: 'grid' | 'polynomial',
): Problem {
  const shape = { batch, channels, height, width }
  const size = batch * channels * height * width
  return {
    shape,
    output: { type: 'dx', n, gridU: randn(new Float64Array(size * n), 21) },
    x: randn(new Float64Array(size), 22),
    segment: {
      shape,
      sigmaSrc: 0.888888888888889,
      sigmaDst: 0.7058823529411765,
      shift: 3.2,
      totalSubsteps: 128,
      eps: 1e-4,
      temperature: 1,
      dx: { segmentSize: 1 / 3.5, shift: 3.2, mode },
    },
  }
}

/** One channel of 2049², 2 substeps: big enough for a 2-D dispatch, cheap on a software adapter. */
function largeDxCase(): Problem {
  const p = dxCase(1, 2, 1, 2049, 2049, 'grid')
  return {
    ...p,
    segment: { ...p.segment, sigmaSrc: 0.8, sigmaDst: 0.7, shift: 1, totalSubsteps: 20 },
  }
}

const f32Output = (output: PolicyOutput<Float64Array>): PolicyOutput<Float32Array> =>
  output.type === 'gm'
    ? {
        type: 'gm',
        k: output.k,
        meansU: new Float32Array(output.meansU),
        logweights: new Float32Array(output.logweights),
        logstds: new Float32Array(output.logstds),
      }
    : { type: 'dx', n: output.n, gridU: new Float32Array(output.gridU) }

/** The WebGPU result of a problem against the CPU reference in float64. */
async function againstCpu(device: GPUDevice, p: Problem, f16: boolean): Promise<FieldResult[]> {
  const reference = p.x.slice()
  const cpu = await createCpuIntegrator().integrate(
    p.output as PolicyOutput<FloatArray>,
    reference,
    p.segment,
  )
  const integrator = createWebGpuIntegrator(device, { f16 })
  try {
    const x = new Float32Array(p.x)
    const gpu = await integrator.integrate(f32Output(p.output), x, p.segment)
    const tol = f16 ? F16_TOLERANCE['rollout'] : ROLLOUT_F32
    const dims = [p.shape.batch, p.shape.channels, p.shape.height, p.shape.width]
    return [
      {
        field: 'num_substeps',
        ok: gpu.numSubsteps === cpu.numSubsteps,
        message: `num_substeps: gpu ${gpu.numSubsteps}, cpu ${cpu.numSubsteps}`,
      },
      compareClose('x_dst', x, reference, dims, tol),
    ]
  } finally {
    integrator.destroy()
  }
}

/** Counts queue submissions made while `work` runs. */
async function countSubmits(device: GPUDevice, work: () => Promise<unknown>): Promise<number> {
  const queue = device.queue
  const submit = queue.submit
  let count = 0
  queue.submit = function countedSubmit(buffers: Iterable<GPUCommandBuffer>) {
    count++
    return submit.call(queue, buffers)
  }
  try {
    await work()
  } finally {
    queue.submit = submit
  }
  return count
}

async function oneSubmission(device: GPUDevice): Promise<FieldResult[]> {
  const p = gmCase(1, 8, 4, 8, 8, 0.3)
  const integrator = createWebGpuIntegrator(device)
  try {
    let numSubsteps = 0
    const submits = await countSubmits(device, async () => {
      numSubsteps = (
        await integrator.integrate(f32Output(p.output), new Float32Array(p.x), p.segment)
      ).numSubsteps
    })
    return [
      {
        field: 'submits',
        ok: submits === 1 && numSubsteps === 37,
        message: `integrate(): ${submits} queue submission(s) for a segment of ${numSubsteps} substeps`,
      },
    ]
  } finally {
    integrator.destroy()
  }
}

/** integrateBuffers on caller buffers gives bit-identical x to integrate, in one submission. */
async function gpuResident(device: GPUDevice): Promise<FieldResult[]> {
  const p = gmCase(2, 4, 3, 6, 5, 0.3)
  const output = f32Output(p.output) as GmOutput<Float32Array>
  const integrator = createWebGpuIntegrator(device)
  const buffers: GPUBuffer[] = []
  const upload = (data: Float32Array) => {
    const buffer = device.createBuffer({
      size: data.byteLength,
      usage: STORAGE | COPY_SRC | COPY_DST,
    })
    device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
    buffers.push(buffer)
    return buffer
  }
  try {
    const expected = new Float32Array(p.x)
    await integrator.integrate(output, expected, p.segment)
    const x = upload(new Float32Array(p.x))
    const gpu = {
      type: 'gm' as const,
      k: output.k,
      meansU: upload(output.meansU),
      logweights: upload(output.logweights),
      logstds: upload(output.logstds),
    }
    const submits = await countSubmits(device, () => integrator.integrateBuffers(gpu, x, p.segment))
    const staging = device.createBuffer({ size: expected.byteLength, usage: MAP_READ | COPY_DST })
    buffers.push(staging)
    const encoder = device.createCommandEncoder()
    encoder.copyBufferToBuffer(x, 0, staging, 0, expected.byteLength)
    device.queue.submit([encoder.finish()])
    await staging.mapAsync(MAP_READ)
    const got = new Float32Array(staging.getMappedRange().slice(0))
    staging.unmap()
    const identical = got.every((v, i) => Object.is(v, expected[i]))
    return [
      {
        field: 'submits',
        ok: submits === 1,
        message: `integrateBuffers(): ${submits} queue submission(s)`,
      },
      {
        field: 'x_dst',
        ok: identical,
        message: `x on the GPU ${identical ? 'is' : 'is NOT'} bit-identical to integrate()'s read-back`,
      },
    ]
  } finally {
    integrator.destroy()
    for (const buffer of buffers) buffer.destroy()
  }
}

async function typedErrors(device: GPUDevice): Promise<FieldResult[]> {
  const p = gmCase(1, 2, 2, 2, 2, 1)
  const output = f32Output(p.output) as GmOutput<Float32Array>
  const x = new Float32Array(p.x)
  const integrator = createWebGpuIntegrator(device)
  const noStorage = device.createBuffer({ size: 64, usage: COPY_DST })
  const cases: [string, string, () => Promise<unknown>][] = [
    ['short x', 'invalid_shape', () => integrator.integrate(output, x.subarray(1), p.segment)],
    [
      'short meansU',
      'invalid_shape',
      () => integrator.integrate({ ...output, meansU: output.meansU.subarray(1) }, x, p.segment),
    ],
    [
      'Float64Array x',
      'invalid_shape',
      () => integrator.integrate(output, new Float64Array(p.x) as never, p.segment),
    ],
    [
      'sigmaDst > sigmaSrc',
      'invalid_sigma',
      () => integrator.integrate(output, x, { ...p.segment, sigmaSrc: 0.5, sigmaDst: 0.6 }),
    ],
    [
      'sigma NaN',
      'invalid_sigma',
      () => integrator.integrate(output, x, { ...p.segment, sigmaSrc: Number.NaN }),
    ],
    [
      'K too large',
      'invalid_option',
      () => integrator.integrate({ ...output, k: 5000 }, x, p.segment),
    ],
    [
      'DX without segment.dx',
      'invalid_option',
      () => integrator.integrate({ type: 'dx', n: 2, gridU: new Float32Array(16) }, x, p.segment),
    ],
    [
      'temperature 0',
      'invalid_option',
      () => integrator.integrate(output, x, { ...p.segment, temperature: 0 }),
    ],
    [
      'all log-weights −∞',
      'invalid_value',
      () =>
        integrator.integrate(
          { ...output, logweights: new Float32Array(output.logweights.length).fill(-Infinity) },
          x,
          p.segment,
        ),
    ],
    [
      'C over the GM kernel limit',
      'invalid_shape',
      () =>
        integrator.integrate(
          {
            type: 'gm',
            k: 1,
            meansU: new Float32Array(129),
            logweights: new Float32Array(1),
            logstds: new Float32Array(1),
          },
          new Float32Array(129),
          { ...p.segment, shape: { batch: 1, channels: 129, height: 1, width: 1 } },
        ),
    ],
    [
      'logstds NaN',
      'invalid_value',
      () =>
        integrator.integrate({ ...output, logstds: new Float32Array([Number.NaN]) }, x, p.segment),
    ],
    [
      'buffer without STORAGE',
      'invalid_shape',
      () =>
        integrator.integrateBuffers({ type: 'dx', n: 1, gridU: noStorage }, noStorage, {
          ...p.segment,
          dx: { segmentSize: 0.2, shift: 1, mode: 'grid' },
        }),
    ],
  ]
  const fields: FieldResult[] = []
  try {
    for (const [name, code, run] of cases) {
      let error: unknown
      try {
        await run()
      } catch (e) {
        error = e
      }
      const got = isPolicyError(error)
        ? error.code
        : error === undefined
          ? 'no error'
          : String(error)
      fields.push({ field: name, ok: got === code, message: `${name}: ${got} (expected ${code})` })
    }
  } finally {
    integrator.destroy()
    noStorage.destroy()
  }
  return fields
}

async function abort(device: GPUDevice): Promise<FieldResult[]> {
  const p = gmCase(1, 2, 2, 4, 4, 1)
  const x = new Float32Array(p.x)
  const before = x.slice()
  const integrator = createWebGpuIntegrator(device)
  const controller = new AbortController()
  const reason = new Error('stop')
  controller.abort(reason)
  let error: unknown
  try {
    await integrator.integrate(f32Output(p.output), x, p.segment, controller.signal)
  } catch (e) {
    error = e
  } finally {
    integrator.destroy()
  }
  const unchanged = x.every((v, i) => v === before[i])
  return [
    {
      field: 'reason',
      ok: error === reason,
      message: `aborted call rejected with ${error === reason ? 'the signal reason' : String(error)}`,
    },
    {
      field: 'x',
      ok: unchanged,
      message: `x ${unchanged ? 'unchanged' : 'MODIFIED'} after an aborted call`,
    },
  ]
}

/** Calls started together on one integrator share its scratch buffers: results must not mix. */
async function concurrent(device: GPUDevice): Promise<FieldResult[]> {
  const problems = [
    gmCase(1, 4, 3, 5, 5, 0.3),
    gmCase(2, 2, 2, 3, 3, 1),
    dxCase(1, 3, 2, 4, 4, 'grid'),
  ]
  const integrator = createWebGpuIntegrator(device)
  try {
    const sequential: Float32Array[] = []
    for (const p of problems) {
      const x = new Float32Array(p.x)
      await integrator.integrate(f32Output(p.output), x, p.segment)
      sequential.push(x)
    }
    const together = problems.map((p) => new Float32Array(p.x))
    await Promise.all(
      problems.map((p, i) => integrator.integrate(f32Output(p.output), together[i], p.segment)),
    )
    return problems.map((_, i) => {
      const same = together[i].every((v, j) => Object.is(v, sequential[i][j]))
      return {
        field: `call ${i}`,
        ok: same,
        message: `concurrent call ${i} ${same ? 'equals' : 'DIFFERS from'} its sequential result`,
      }
    })
  } finally {
    integrator.destroy()
  }
}

/** After the device is lost, calls reject with PolicyDeviceError instead of silently doing nothing. */
async function lostDevice(device: GPUDevice): Promise<FieldResult[]> {
  const p = gmCase(1, 2, 2, 2, 2, 1)
  const integrator = createWebGpuIntegrator(device)
  device.destroy()
  await device.lost
  let error: unknown
  try {
    await integrator.integrate(f32Output(p.output), new Float32Array(p.x), p.segment)
  } catch (e) {
    error = e
  }
  const name = (error as Error | undefined)?.name
  return [
    {
      field: 'error',
      ok: name === 'PolicyDeviceError',
      message: `integrate() on a lost device: ${error === undefined ? 'resolved' : `${name}: ${(error as Error).message}`}`,
    },
  ]
}
