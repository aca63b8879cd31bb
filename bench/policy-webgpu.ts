/**
 * @module bench/policy-webgpu
 * `npm run bench -- policy-webgpu`: one whole NFE segment of the GM policy (prepare + every substep)
 * on the WebGPU twin, at the CPU bench's shapes (bench/policy.ts), against the CPU reference
 * integrator (Float32Array) measured in the same run on the same inputs.
 *
 * Rows: CPU `createCpuIntegrator().integrate` (policy build + rollout); WebGPU `integrate` (upload,
 * one submission, read-back); WebGPU `integrateBuffers` (state and network output already on the GPU,
 * timed to `queue.onSubmittedWorkDone()`); the same with half-float means (`f16: true`).
 *
 * The device comes from the `webgpu` package (Dawn). Without a GPU driver it is SwiftShader, a CPU
 * emulation: those numbers are a smoke test of the code path, never a statement about GPU speed.
 * Env: BENCH_REPEATS (default 3).
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createCpuIntegrator, type SegmentSpec } from '@piflow/policy'
import { createWebGpuIntegrator, type GpuGmOutput } from '@piflow/policy/webgpu'
import { hasSystemVulkan, requestDawnDevice, swiftShaderEnv } from '../test/webgpu/node-dawn.ts'
import {
  benchRepeats,
  BENCH_EPS as EPS,
  firstStep,
  gmBenchInputs,
  median,
  policyShape,
  BENCH_SHAPES as SHAPES,
  type BenchShape as Shape,
} from './support/shapes.ts'

const REPEATS = benchRepeats(3)
const CHILD_FLAG = 'PIFLOW_BENCH_SWIFTSHADER_CHILD'
const STORAGE_COPY = 0x80 | 0x08 | 0x04

/** Median wall time of `fn` in ms over REPEATS runs after one warm-up. */
async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  await fn()
  const times: number[] = []
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now()
    await fn()
    times.push(performance.now() - t0)
  }
  return median(times)
}

interface Row {
  path: string
  msPerSegment: number
}

async function benchShape(device: GPUDevice, s: Shape): Promise<{ rows: Row[]; n: number }> {
  const step = firstStep(s)
  const segment: SegmentSpec = {
    shape: policyShape(s),
    sigmaSrc: step.sigmaSrc,
    sigmaDst: step.sigmaDst,
    shift: s.shift,
    totalSubsteps: 128,
    eps: EPS,
    temperature: step.temperature,
  }
  const { xSrc, ...gm } = gmBenchInputs(s, (n) => new Float32Array(n))
  const output = { type: 'gm' as const, k: s.K, ...gm }
  const x = xSrc.slice()
  const rows: Row[] = []

  const cpu = createCpuIntegrator()
  let n = 0
  rows.push({
    path: 'CPU reference integrator, Float32Array',
    msPerSegment: await timeMs(async () => {
      x.set(xSrc)
      n = (await cpu.integrate(output, x, segment)).numSubsteps
    }),
  })

  const buffers: GPUBuffer[] = []
  const upload = (data: Float32Array) => {
    const buffer = device.createBuffer({ size: data.byteLength, usage: STORAGE_COPY })
    device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
    buffers.push(buffer)
    return buffer
  }
  const gpuOutput: GpuGmOutput = {
    type: 'gm',
    k: s.K,
    meansU: upload(output.meansU),
    logweights: upload(output.logweights),
    logstds: upload(output.logstds),
  }
  const xGpu = upload(xSrc)
  for (const f16 of [false, true]) {
    const integrator = createWebGpuIntegrator(device, { f16 })
    const tag = f16 ? 'f16 means' : 'f32'
    rows.push({
      path: `WebGPU integrate() ${tag}: upload + 1 submission + read-back`,
      msPerSegment: await timeMs(async () => {
        x.set(xSrc)
        await integrator.integrate(output, x, segment)
      }),
    })
    rows.push({
      path: `WebGPU integrateBuffers() ${tag}: GPU-resident, no read-back`,
      msPerSegment: await timeMs(async () => {
        await integrator.integrateBuffers(gpuOutput, xGpu, segment)
        await device.queue.onSubmittedWorkDone()
      }),
    })
    integrator.destroy()
  }
  for (const buffer of buffers) buffer.destroy()
  return { rows, n }
}

const fmt = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a')

async function main(): Promise<void> {
  const dawn = hasSystemVulkan()
    ? await requestDawnDevice()
    : ({ device: null, reason: 'no system Vulkan loader' } as const)
  if (!dawn.device) {
    const env = swiftShaderEnv()
    if (env && !process.env[CHILD_FLAG]) {
      // LD_LIBRARY_PATH only counts at process start: re-run this bench with SwiftShader's ICD.
      const self = fileURLToPath(import.meta.url)
      const child = spawnSync(process.execPath, ['--import', 'tsx', self], {
        stdio: 'inherit',
        env: { ...process.env, ...env, [CHILD_FLAG]: '1' },
      })
      process.exit(child.status ?? 1)
    }
    console.log(`# policy-webgpu bench skipped: ${dawn.device === null ? dawn.reason : ''}`)
    process.exit(0)
  }
  const software = /swiftshader|llvmpipe|lavapipe/i.test(dawn.adapter)
  console.log(`# policy-webgpu bench — one GM NFE segment, median of ${REPEATS} runs\n`)
  console.log(
    `adapter: ${dawn.adapter}; node ${process.version}; CPU baseline in the same process.\n`,
  )
  if (software) {
    console.log(
      '> **SMOKE TEST ONLY: this adapter is a software (CPU) emulation of a GPU. These numbers show ' +
        'that the code path runs; they say nothing about WebGPU speed on real hardware.**\n',
    )
  }
  for (const s of SHAPES) {
    const { rows, n } = await benchShape(dawn.device, s)
    const cpuMs = rows[0].msPerSegment
    console.log(
      `## ${s.name}: B=${s.B}, K=${s.K}, C=${s.C}, ${s.H}×${s.W}, ${n} substeps (first NFE)\n`,
    )
    console.log('| path | ms / segment | ms / substep | CPU time ÷ this |')
    console.log('|---|---:|---:|---:|')
    for (const r of rows) {
      console.log(
        `| ${r.path} | ${fmt(r.msPerSegment)} | ${fmt(r.msPerSegment / n, 3)} | ${fmt(cpuMs / r.msPerSegment)}× |`,
      )
    }
    console.log('')
  }
  if (software) console.log('(software adapter: smoke test only, see above)')
  dawn.device.destroy()
  process.exit(0)
}

await main()
