/**
 * @module sample
 * The few-step sampling loop (fixtures/golden/README.md §3 `sampling_loop`): for each NFE step, one (async) student
 * forward at (x, σ_src), then the policy built from its output is integrated to σ_dst by a pluggable
 * {@link SegmentIntegrator} (CPU reference here, WebGPU in `@piflow/policy/webgpu`).
 */
import { createDxPolicy } from './dx.ts'
import { PolicyOptionError } from './errors.ts'
import { createGmPolicy, GM_DEFAULT_EPS } from './gm.ts'
import { checkShift, checkTotalSubsteps, rollout } from './rollout.ts'
import type {
  DxSegmentOptions,
  FloatArray,
  LatentShape,
  PolicyOutput,
  Schedule,
  SegmentIntegrator,
  SegmentSpec,
  StepInfo,
} from './types.ts'
import { checkNumber, checkShape, checkSigma, checkTensor } from './validate.ts'

/**
 * The CPU reference integrator: the policy module's own GM/DX policies and rollout, in the array type
 * of `x` (Float64Array = reference precision, Float32Array = fast path).
 */
export function createCpuIntegrator<T extends FloatArray = FloatArray>(): SegmentIntegrator<T> {
  return {
    name: 'cpu',
    async integrate(output, x, segment, signal) {
      signal?.throwIfAborted()
      const policy = buildSegmentPolicy(output, x, segment)
      try {
        const { numSubsteps } = rollout(policy, x, {
          sigmaSrc: segment.sigmaSrc,
          sigmaDst: segment.sigmaDst,
          shift: segment.shift,
          totalSubsteps: segment.totalSubsteps,
        })
        return { numSubsteps }
      } finally {
        policy.release?.() // the next segment's policy reuses its memory
      }
    },
  }
}

/** The policy of one segment, as every CPU path builds it (σ_src shared by the batch). */
function buildSegmentPolicy<T extends FloatArray>(
  output: PolicyOutput<T>,
  x: T,
  segment: SegmentSpec,
) {
  const sigmaSrc = new Float64Array(segment.shape.batch).fill(segment.sigmaSrc)
  if (output?.type === 'gm') {
    return createGmPolicy(output, x, sigmaSrc, segment.shape, {
      eps: segment.eps,
      temperature: segment.temperature,
    })
  }
  if (output?.type === 'dx') {
    if (!segment.dx)
      throw new PolicyOptionError('a DX output needs segment.dx {segmentSize, shift, mode}')
    return createDxPolicy(output, x, sigmaSrc, segment.shape, { ...segment.dx, eps: segment.eps })
  }
  throw new PolicyOptionError(
    `unknown policy output type ${String((output as { type?: unknown })?.type)}`,
  )
}

/**
 * GM temperature of NFE step `k` (fixtures/golden/README.md §3 `sampling_loop`): `'auto'` follows the schedule's
 * per-step value; a fixed temperature applies to every step but the last, which always runs at 1.
 * Every path that integrates a segment (edge, browser, backend `/step`) takes its temperature from here.
 */
export function segmentTemperature(
  temperature: number | 'auto',
  schedule: Schedule,
  k: number,
): number {
  if (temperature === 'auto') return schedule.steps[k]!.temperature
  return k === schedule.steps.length - 1 ? 1 : temperature
}

/** Options of {@link sample}. */
export interface SampleOptions<T extends FloatArray> {
  /** initial noise (B,C,H,W); not modified */
  xInit: T
  shape: LatentShape
  schedule: Schedule
  /** the student: policy output at (x, σ_src) of step `step` */
  forward: (x: T, sigmaSrc: number, step: number, signal?: AbortSignal) => Promise<PolicyOutput<T>>
  /** @default createCpuIntegrator() */
  integrator?: SegmentIntegrator<T>
  /** @default 1e-4 */
  eps?: number
  /** GM temperature for every step but the last; 'auto' = the schedule's. @default 'auto' */
  temperature?: number | 'auto'
  /** DX policy parameters (required for DX students) */
  dx?: DxSegmentOptions
  /** progress after each NFE step; awaited, so it may stream previews */
  onStep?: (info: StepInfo<T>) => void | Promise<void>
  signal?: AbortSignal
}

/**
 * Runs the full sampler and returns x at σ = σ_dst of the last step (a new buffer).
 *
 * @example
 * ```ts
 * const x0 = await sample({ xInit: noise, shape, schedule: buildSchedule({ nfe: 4, shift: 3.2,
 *   finalStepSizeScale: 0.5 }), forward: (x, sigma) => student(x, sigma) })
 * ```
 * @throws {PolicyError} on invalid options; the signal's reason when aborted
 */
export async function sample<T extends FloatArray>(options: SampleOptions<T>): Promise<T> {
  const { shape, schedule, forward, onStep, signal } = options
  const size = checkShape(shape)
  checkTensor('xInit', options.xInit, size, '(B,C,H,W)')
  if (typeof forward !== 'function') throw new PolicyOptionError('forward must be a function')
  if (!schedule || !Array.isArray(schedule.steps) || schedule.steps.length === 0) {
    throw new PolicyOptionError('schedule must come from buildSchedule()')
  }
  const shift = checkShift(schedule.shiftUsed)
  const totalSubsteps = checkTotalSubsteps(schedule.totalSubsteps)
  const eps = checkNumber('eps', options.eps ?? GM_DEFAULT_EPS, 0, 1, true)
  const temperature = options.temperature ?? 'auto'
  if (temperature !== 'auto') checkNumber('temperature', temperature, 0)
  const integrator = options.integrator ?? createCpuIntegrator<T>()

  const x = options.xInit.slice() as T
  const nfe = schedule.steps.length
  for (let k = 0; k < nfe; k++) {
    signal?.throwIfAborted()
    const step = schedule.steps[k]
    const sigmaSrc = checkSigma(`schedule.steps[${k}].sigmaSrc`, step.sigmaSrc)
    const sigmaDst = checkSigma(`schedule.steps[${k}].sigmaDst`, step.sigmaDst)
    const output = await forward(x, sigmaSrc, k, signal)
    signal?.throwIfAborted()
    const { numSubsteps } = await integrator.integrate(
      output,
      x,
      {
        shape,
        sigmaSrc,
        sigmaDst,
        shift,
        totalSubsteps,
        eps,
        temperature: segmentTemperature(temperature, schedule, k),
        ...(options.dx ? { dx: options.dx } : {}),
      },
      signal,
    )
    await onStep?.({ step: k, nfe, sigmaSrc, sigmaDst, numSubsteps, x })
  }
  return x
}
