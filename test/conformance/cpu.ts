/**
 * @module cpu
 * Runs golden cases against the CPU policy module and checks them. Split in three so other
 * implementations (WebGPU) reuse the same case list and checks:
 * - input decoding (`latentShape`, `floatArray`, `policyOutputOf`),
 * - runners that produce `Outputs` (a map from expected-field path to value): `runCpuCase` for the CPU
 *   module, `runIntegratorCase` for any `SegmentIntegrator` (rollout and sampling_loop kinds),
 * - `checkCase`, which compares `Outputs` with the case's expectations at a dtype's tolerance.
 */
import {
  buildSchedule,
  createCpuIntegrator,
  createDxPolicy,
  createGmPolicy,
  type FloatArray,
  type LatentShape,
  type Policy,
  type PolicyOutput,
  piidSegment,
  rollout,
  type SegmentIntegrator,
  sample,
  trainSampleT,
} from '@piflow/policy'
import {
  type BoolTensor,
  CASE_KINDS,
  type CaseKind,
  type Dtype,
  type GoldenCase,
  isBoolTensor,
  isTensor,
  type Tensor,
  type Value,
  type ValueRecord,
} from './cases.ts'
import { compareClose, compareExact, type FieldResult } from './compare.ts'

/** Produced values by expected-field path, e.g. `u`, `results[1].x0_hat`, `steps[0].num_substeps`. */
export type Outputs = Map<string, ArrayLike<number> | ArrayLike<boolean> | number | boolean>

/**
 * Fields that describe a case's observable result: every implementation must produce them. The CPU
 * reference must produce every expected field; others may leave out internals (means_x0, raw times …).
 * `[*]` matches any list index.
 */
export const CORE_FIELDS: Record<CaseKind, readonly string[]> = {
  gm_velocity: ['x0_hat', 'u'],
  dx_velocity: ['results[*].x0_hat', 'results[*].u'],
  rollout: ['num_substeps', 'x_dst'],
  schedule: [
    'shift_used',
    'sigma_src',
    'sigma_dst',
    'raw_dst',
    'substeps_per_step',
    'auto_temperature',
  ],
  sampling_loop: ['steps[*].num_substeps', 'steps[*].x_after', 'x_final'],
  train_sample_t: ['segment_index', 'raw_t_src', 'sigma_t_src', 'segment_size'],
  piid_segment: ['x_a', 'tgt_u', 'pred_u', 'loss'],
}

/** Leaf names compared exactly (README: integer fields must match exactly); booleans always are. */
export const EXACT_FIELDS: ReadonlySet<string> = new Set([
  'num_substeps',
  'substeps_per_step',
  'total_substeps_used',
  'segment_index',
])

export const isCaseKind = (kind: string): kind is CaseKind =>
  (CASE_KINDS as readonly string[]).includes(kind)

// ---------------------------------------------------------------------------------------------------
// decoding inputs

export function tensorOf(value: Value | undefined, name: string): Tensor {
  if (!isTensor(value)) throw new Error(`input ${name} must be a tensor {shape, data}`)
  return value
}

export function numberOf(value: Value | undefined, name: string): number {
  if (typeof value !== 'number') throw new Error(`input ${name} must be a number`)
  return value
}

/** A tensor's data as the dtype's array type (a copy). */
export function floatArray(t: Tensor, dtype: Dtype): FloatArray {
  return dtype === 'float32' ? Float32Array.from(t.data) : Float64Array.from(t.data)
}

/** (B,C,H,W) tensor → LatentShape. */
export function latentShape(t: Tensor): LatentShape {
  if (t.shape.length !== 4) throw new Error(`latent must be (B,C,H,W), got [${t.shape}]`)
  const [batch, channels, height, width] = t.shape
  return { batch, channels, height, width }
}

/** GM (`means_u`, `logweights`, `logstds`) or DX (`grid_u`) network output from a record. */
export function policyOutputOf(rec: ValueRecord, dtype: Dtype): PolicyOutput {
  if (rec['grid_u'] !== undefined) {
    const gridU = tensorOf(rec['grid_u'], 'grid_u')
    return { type: 'dx', n: gridU.shape[1], gridU: floatArray(gridU, dtype) }
  }
  const meansU = tensorOf(rec['means_u'], 'means_u')
  return {
    type: 'gm',
    k: meansU.shape[1],
    meansU: floatArray(meansU, dtype),
    logweights: floatArray(tensorOf(rec['logweights'], 'logweights'), dtype),
    logstds: floatArray(tensorOf(rec['logstds'], 'logstds'), dtype),
  }
}

function maskOf(value: Value | undefined): boolean[] | undefined {
  if (value == null) return undefined
  if (!isBoolTensor(value)) throw new Error('dropout_mask must be a boolean tensor or null')
  return (value as BoolTensor).data
}

/** σ inputs may be a (B) tensor or a scalar shared by the batch. */
function perSample(value: Value | undefined, batch: number, name: string): Float64Array {
  if (typeof value === 'number') return new Float64Array(batch).fill(value)
  return Float64Array.from(tensorOf(value, name).data)
}

function record(value: Value | undefined, name: string): ValueRecord {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || isTensor(value)) {
    throw new Error(`input ${name} must be an object`)
  }
  return value as ValueRecord
}

// ---------------------------------------------------------------------------------------------------
// runners

/** Runs a case of any documented kind against the CPU policy module. */
export async function runCpuCase(c: GoldenCase, dtype: Dtype): Promise<Outputs> {
  if (!isCaseKind(c.kind)) throw new Error(`unsupported case kind "${c.kind}"`)
  return CPU_RUNNERS[c.kind](c.inputs, dtype)
}

const CPU_RUNNERS: Record<CaseKind, (inputs: ValueRecord, dtype: Dtype) => Promise<Outputs>> = {
  async gm_velocity(inputs, dtype) {
    const xSrc = tensorOf(inputs['x_src'], 'x_src')
    const shape = latentShape(xSrc)
    const mask = maskOf(inputs['dropout_mask'])
    const policy = createGmPolicy(
      policyOutputOf(inputs, dtype) as Extract<PolicyOutput, { type: 'gm' }>,
      floatArray(xSrc, dtype),
      perSample(inputs['sigma_src'], shape.batch, 'sigma_src'),
      shape,
      {
        eps: numberOf(inputs['eps'], 'eps'),
        temperature: numberOf(inputs['temperature'] ?? 1, 'temperature'),
        ...(mask ? { dropoutMask: mask } : {}),
      },
    )
    const xT = floatArray(tensorOf(inputs['x_t'], 'x_t'), dtype)
    const sigmaT = perSample(inputs['sigma_t'], shape.batch, 'sigma_t')
    const out: Outputs = new Map()
    out.set('means_x0', policy.meansX0())
    out.set('var_x0', policy.varX0)
    out.set('logweights_effective', policy.logweightsEffective())
    out.set(
      'posterior_weights',
      policy.posteriorWeights(
        floatLike(xT, shape.batch * policy.k * shape.height * shape.width),
        xT,
        sigmaT,
      ),
    )
    out.set('x0_hat', policy.x0Hat(floatLike(xT, xT.length), xT, sigmaT))
    out.set('u', policy.velocity(floatLike(xT, xT.length), xT, sigmaT))
    if (policy.dropoutMaskEffective) out.set('dropout_mask_effective', policy.dropoutMaskEffective)
    return out
  },

  async dx_velocity(inputs, dtype) {
    const xSrc = tensorOf(inputs['x_src'], 'x_src')
    const shape = latentShape(xSrc)
    const policy = createDxPolicy(
      policyOutputOf(inputs, dtype) as Extract<PolicyOutput, { type: 'dx' }>,
      floatArray(xSrc, dtype),
      perSample(inputs['sigma_src'], shape.batch, 'sigma_src'),
      shape,
      {
        segmentSize: numberOf(inputs['segment_size'], 'segment_size'),
        shift: numberOf(inputs['shift'], 'shift'),
        mode: inputs['mode'] as 'grid' | 'polynomial',
        eps: numberOf(inputs['eps'], 'eps'),
      },
    )
    const out: Outputs = new Map()
    out.set('nodes_x0', policy.nodesX0)
    out.set('raw_src', policy.rawSrc)
    out.set('raw_dst', policy.rawDst)
    out.set('segment_effective', policy.segmentEffective)
    const queries = inputs['queries']
    if (!Array.isArray(queries)) throw new Error('input queries must be a list')
    queries.forEach((q, i) => {
      const query = record(q, `queries[${i}]`)
      const xT = floatArray(tensorOf(query['x_t'], 'x_t'), dtype)
      const sigmaT = perSample(query['sigma_t'], shape.batch, 'sigma_t')
      out.set(
        `results[${i}].raw_t`,
        Array.from(sigmaT, (s) => policy.rawTime(s)),
      )
      out.set(`results[${i}].x0_hat`, policy.x0Hat(floatLike(xT, xT.length), xT, sigmaT))
      out.set(`results[${i}].u`, policy.velocity(floatLike(xT, xT.length), xT, sigmaT))
    })
    return out
  },

  async rollout(inputs, dtype) {
    const xSrc = tensorOf(inputs['x_src'], 'x_src')
    const shape = latentShape(xSrc)
    const spec = record(inputs['policy'], 'policy')
    const sigmaSrc = numberOf(inputs['sigma_src'], 'sigma_src')
    const x = floatArray(xSrc, dtype)
    const policy: Policy<FloatArray> =
      spec['type'] === 'dx'
        ? createDxPolicy(
            policyOutputOf(spec, dtype) as Extract<PolicyOutput, { type: 'dx' }>,
            x,
            new Float64Array(shape.batch).fill(sigmaSrc),
            shape,
            {
              segmentSize: numberOf(spec['segment_size'], 'policy.segment_size'),
              shift: numberOf(spec['shift'], 'policy.shift'),
              mode: spec['mode'] as 'grid' | 'polynomial',
              eps: numberOf(spec['eps'], 'policy.eps'),
            },
          )
        : createGmPolicy(
            policyOutputOf(spec, dtype) as Extract<PolicyOutput, { type: 'gm' }>,
            x,
            new Float64Array(shape.batch).fill(sigmaSrc),
            shape,
            {
              eps: numberOf(spec['eps'], 'policy.eps'),
              temperature: numberOf(spec['temperature'] ?? 1, 'policy.temperature'),
            },
          )
    const trajectory: number[] = []
    const result = rollout(policy, x, {
      sigmaSrc,
      sigmaDst: numberOf(inputs['sigma_dst'], 'sigma_dst'),
      shift: numberOf(inputs['shift'], 'shift'),
      totalSubsteps: numberOf(inputs['total_substeps'], 'total_substeps'),
      recordSigmas: true,
      onSubstep: (_i, _sigma, state) => {
        for (let j = 0; j < state.length; j++) trajectory.push(state[j])
      },
    })
    const out: Outputs = new Map()
    out.set('raw_src', result.rawSrc)
    out.set('raw_dst', result.rawDst)
    out.set('num_substeps', result.numSubsteps)
    out.set('substep_sigmas', result.sigmas as Float64Array)
    out.set('raw_final', result.rawFinal)
    out.set('x_dst', x)
    out.set('x_trajectory', trajectory)
    return out
  },

  async schedule(inputs) {
    const s = buildSchedule({
      nfe: numberOf(inputs['nfe'], 'nfe'),
      shift: numberOf(inputs['shift'], 'shift'),
      finalStepSizeScale: numberOf(inputs['final_step_size_scale'] ?? 1, 'final_step_size_scale'),
      h: numberOf(inputs['h'] ?? 0, 'h'),
      numTrainTimesteps: numberOf(inputs['num_train_timesteps'] ?? 1000, 'num_train_timesteps'),
      totalSubsteps: numberOf(inputs['total_substeps'] ?? 128, 'total_substeps'),
      ...(inputs['use_dynamic_shifting']
        ? {
            dynamicShift: {
              seqLen: numberOf(inputs['seq_len'], 'seq_len'),
              baseSeqLen: numberOf(inputs['base_seq_len'], 'base_seq_len'),
              maxSeqLen: numberOf(inputs['max_seq_len'], 'max_seq_len'),
              baseLogshift: numberOf(inputs['base_logshift'], 'base_logshift'),
              maxLogshift: numberOf(inputs['max_logshift'], 'max_logshift'),
            },
          }
        : {}),
    })
    const col = (pick: (step: (typeof s.steps)[number]) => number) => s.steps.map(pick)
    const out: Outputs = new Map()
    out.set('shift_used', s.shiftUsed)
    out.set(
      'raw_src',
      col((st) => st.rawSrc),
    )
    out.set(
      'sigma_src',
      col((st) => st.sigmaSrc),
    )
    out.set(
      'sigma_next',
      col((st) => st.sigmaNext),
    )
    out.set(
      'm',
      col((st) => st.m),
    )
    out.set(
      'sigma_dst',
      col((st) => st.sigmaDst),
    )
    out.set(
      'raw_dst',
      col((st) => st.rawDst),
    )
    out.set(
      'timesteps',
      col((st) => st.timestep),
    )
    out.set(
      'timesteps_dst',
      col((st) => st.timestepDst),
    )
    out.set(
      'substeps_per_step',
      col((st) => st.numSubsteps),
    )
    out.set('total_substeps_used', s.totalSubstepsUsed)
    out.set('auto_temperature', s.autoTemperature)
    out.set(
      'temperature_per_step_auto',
      col((st) => st.temperature),
    )
    return out
  },

  sampling_loop: (inputs, dtype) => runSamplingLoop(inputs, dtype, createCpuIntegrator()),

  async train_sample_t(inputs) {
    const r = trainSampleT(tensorOf(inputs['raw_t_draws'], 'raw_t_draws').data, {
      nfe: numberOf(inputs['nfe'], 'nfe'),
      finalStepSizeScale: numberOf(inputs['final_step_size_scale'] ?? 1, 'final_step_size_scale'),
      shift: numberOf(inputs['shift'], 'shift'),
      eps: numberOf(inputs['eps'], 'eps'),
    })
    const out: Outputs = new Map()
    out.set('segment_index', r.segmentIndex)
    out.set('raw_t_src', r.rawTSrc)
    out.set('sigma_t_src', r.sigmaTSrc)
    out.set('segment_size', r.segmentSize)
    return out
  },

  async piid_segment(inputs, dtype) {
    const xSrc = tensorOf(inputs['x_src'], 'x_src')
    const shape = latentShape(xSrc)
    const coef = record(inputs['teacher_coef'], 'teacher_coef')
    const a = numberOf(coef['a'], 'teacher_coef.a')
    const b = numberOf(coef['b'], 'teacher_coef.b')
    const c = numberOf(coef['c'], 'teacher_coef.c')
    const perSampleSize = xSrc.data.length / shape.batch
    // The analytic teacher u_T(x, σ) = a·x + b·σ + c stands in for the frozen network.
    const teacher = (x: FloatArray, sigma: Float64Array) => {
      const u = floatLike(x, x.length)
      for (let j = 0; j < x.length; j++)
        u[j] = a * x[j] + b * sigma[Math.floor(j / perSampleSize)] + c
      return u
    }
    const mask = maskOf(inputs['dropout_mask'])
    const r = await piidSegment({
      output: policyOutputOf(inputs, dtype) as Extract<PolicyOutput, { type: 'gm' }>,
      xSrc: floatArray(xSrc, dtype),
      shape,
      rawSrc: numberOf(inputs['raw_src'], 'raw_src'),
      sigmaSrc: numberOf(inputs['sigma_src'], 'sigma_src'),
      segmentSize: numberOf(inputs['segment_size'], 'segment_size'),
      shift: numberOf(inputs['shift'], 'shift'),
      teacherRatio: numberOf(inputs['teacher_ratio'], 'teacher_ratio'),
      numIntermediateStates: numberOf(inputs['num_intermediate_states'], 'num_intermediate_states'),
      windowSubsteps: numberOf(inputs['window_substeps'], 'window_substeps'),
      totalSubsteps: numberOf(inputs['total_substeps'], 'total_substeps'),
      eps: numberOf(inputs['eps'], 'eps'),
      policyEps: numberOf(inputs['policy_eps'], 'policy_eps'),
      lossScale: numberOf(inputs['loss_scale'] ?? 1, 'loss_scale'),
      studentDraws: tensorOf(inputs['student_draws'], 'student_draws').data,
      teacherDraws: tensorOf(inputs['teacher_draws'], 'teacher_draws').data,
      ...(mask ? { dropoutMask: mask } : {}),
      getXTDst: inputs['get_x_t_dst'] === true,
      teacher,
    })
    const out: Outputs = new Map()
    out.set('window_size', r.windowSize)
    out.set('student_intervals', r.studentIntervals)
    out.set('teacher_intervals', r.teacherIntervals)
    out.set('raw_a', r.rawA)
    out.set('raw_b', r.rawB)
    out.set('sigma_a', r.sigmaA)
    out.set('x_a', r.xA)
    out.set('tgt_u', r.tgtU)
    out.set('pred_u', r.predU)
    out.set('local_only', r.localOnly)
    out.set('loss', r.loss)
    if (r.dropoutMaskEffective) out.set('dropout_mask_effective', r.dropoutMaskEffective)
    if (r.xTDst) out.set('x_t_dst', r.xTDst)
    return out
  },
}

/**
 * Runs a `rollout` or `sampling_loop` case through any segment integrator (CPU, WebGPU …). Produces
 * the kind's core fields; `Float32Array` integrators get `dtype: 'float32'`.
 */
export async function runIntegratorCase(
  c: GoldenCase,
  dtype: Dtype,
  integrator: SegmentIntegrator<FloatArray>,
): Promise<Outputs> {
  if (c.kind === 'sampling_loop') return runSamplingLoop(c.inputs, dtype, integrator)
  if (c.kind !== 'rollout')
    throw new Error(`runIntegratorCase: kind ${c.kind} has no integrator form`)
  const inputs = c.inputs
  const xSrc = tensorOf(inputs['x_src'], 'x_src')
  const shape = latentShape(xSrc)
  const spec = record(inputs['policy'], 'policy')
  const x = floatArray(xSrc, dtype)
  const { numSubsteps } = await integrator.integrate(policyOutputOf(spec, dtype), x, {
    shape,
    sigmaSrc: numberOf(inputs['sigma_src'], 'sigma_src'),
    sigmaDst: numberOf(inputs['sigma_dst'], 'sigma_dst'),
    shift: numberOf(inputs['shift'], 'shift'),
    totalSubsteps: numberOf(inputs['total_substeps'], 'total_substeps'),
    eps: numberOf(spec['eps'], 'policy.eps'),
    temperature: typeof spec['temperature'] === 'number' ? spec['temperature'] : 1,
    ...(spec['type'] === 'dx'
      ? {
          dx: {
            segmentSize: numberOf(spec['segment_size'], 'policy.segment_size'),
            shift: numberOf(spec['shift'], 'policy.shift'),
            mode: spec['mode'] as 'grid' | 'polynomial',
          },
        }
      : {}),
  })
  const out: Outputs = new Map()
  out.set('num_substeps', numSubsteps)
  out.set('x_dst', x)
  return out
}

async function runSamplingLoop(
  inputs: ValueRecord,
  dtype: Dtype,
  integrator: SegmentIntegrator<FloatArray>,
): Promise<Outputs> {
  const xInit = tensorOf(inputs['x_init'], 'x_init')
  const shape = latentShape(xInit)
  const schedule = buildSchedule({
    nfe: numberOf(inputs['nfe'], 'nfe'),
    shift: numberOf(inputs['shift'], 'shift'),
    finalStepSizeScale: numberOf(inputs['final_step_size_scale'] ?? 1, 'final_step_size_scale'),
    totalSubsteps: numberOf(inputs['total_substeps'], 'total_substeps'),
  })
  const networkOutputs = inputs['network_outputs']
  if (!Array.isArray(networkOutputs) || networkOutputs.length !== schedule.nfe) {
    throw new Error('network_outputs must hold one entry per step')
  }
  const outputs = networkOutputs.map((o, i) =>
    policyOutputOf(record(o, `network_outputs[${i}]`), dtype),
  )
  const out: Outputs = new Map()
  const xFinal = await sample({
    xInit: floatArray(xInit, dtype),
    shape,
    schedule,
    forward: async (_x, _sigma, step) => outputs[step],
    integrator,
    eps: numberOf(inputs['eps'], 'eps'),
    temperature: numberOf(inputs['temperature'] ?? 1, 'temperature'),
    ...(inputs['policy_type'] === 'dx'
      ? {
          dx: {
            segmentSize: numberOf(inputs['dx_segment_size'], 'dx_segment_size'),
            shift: numberOf(inputs['dx_shift'], 'dx_shift'),
            mode: (inputs['dx_mode'] ?? 'grid') as 'grid' | 'polynomial',
          },
        }
      : {}),
    onStep: ({ step, sigmaSrc, sigmaDst, numSubsteps, x }) => {
      out.set(`steps[${step}].sigma_src`, sigmaSrc)
      out.set(`steps[${step}].sigma_dst`, sigmaDst)
      out.set(`steps[${step}].num_substeps`, numSubsteps)
      out.set(`steps[${step}].x_after`, x.slice())
    },
  })
  out.set('x_final', xFinal)
  return out
}

function floatLike(like: FloatArray, length: number): FloatArray {
  return like instanceof Float32Array ? new Float32Array(length) : new Float64Array(length)
}

// ---------------------------------------------------------------------------------------------------
// checking

interface Leaf {
  path: string
  value: Tensor | BoolTensor | number | boolean | number[] | boolean[]
}

/** Flattens a case's `expected` into comparable leaves (tensors, scalars, plain number/bool lists). */
export function expectedLeaves(expected: ValueRecord): Leaf[] {
  const leaves: Leaf[] = []
  const walk = (value: Value, path: string) => {
    if (
      isTensor(value) ||
      isBoolTensor(value) ||
      typeof value === 'number' ||
      typeof value === 'boolean'
    ) {
      leaves.push({ path, value })
    } else if (Array.isArray(value)) {
      if (value.every((v) => typeof v === 'number') || value.every((v) => typeof v === 'boolean')) {
        leaves.push({ path, value: value as number[] | boolean[] })
      } else {
        for (let i = 0; i < value.length; i++) walk(value[i], `${path}[${i}]`)
      }
    } else if (value !== null && typeof value === 'object') {
      for (const [key, v] of Object.entries(value)) walk(v, path ? `${path}.${key}` : key)
    }
    // strings / nulls carry no numbers to compare
  }
  walk(expected, '')
  return leaves
}

const pattern = (path: string) => path.replace(/\[\d+\]/g, '[*]')
const leafName = (path: string) => path.slice(path.lastIndexOf('.') + 1).replace(/\[\d+\]$/, '')

/** Result of one case at one dtype. */
export interface CaseResult {
  id: string
  kind: string
  dtype: Dtype
  ok: boolean
  fields: FieldResult[]
  /** expected fields the implementation did not produce (allowed only outside CORE_FIELDS) */
  skipped: string[]
}

/**
 * Compares produced outputs with a case's expectations at `dtype`'s tolerance.
 * `requireAll` (CPU reference): every expected field must be produced. Otherwise only the kind's
 * CORE_FIELDS are required and other missing fields are listed in `skipped`.
 */
export function checkCase(
  c: GoldenCase,
  outputs: Outputs,
  dtype: Dtype,
  options: { requireAll?: boolean } = {},
): CaseResult {
  const requireAll = options.requireAll ?? true
  const core = isCaseKind(c.kind) ? CORE_FIELDS[c.kind] : []
  const tol = c.tolerance[dtype]
  const fields: FieldResult[] = []
  const skipped: string[] = []
  for (const { path, value } of expectedLeaves(c.expected)) {
    const got = outputs.get(path)
    if (got === undefined && !requireAll && !core.includes(pattern(path))) {
      skipped.push(path)
      continue
    }
    const shape =
      isTensor(value) || isBoolTensor(value)
        ? value.shape
        : Array.isArray(value)
          ? [value.length]
          : []
    const exactValues = isBoolTensor(value) ? value.data : value
    const isBool =
      isBoolTensor(value) ||
      typeof value === 'boolean' ||
      (Array.isArray(value) && typeof value[0] === 'boolean')
    if (isBool || EXACT_FIELDS.has(leafName(path))) {
      const expectedExact = isTensor(exactValues)
        ? exactValues.data
        : (exactValues as number | boolean | number[] | boolean[])
      fields.push(
        compareExact(path, got as ArrayLike<number> | number | undefined, expectedExact, shape),
      )
    } else {
      const expectedClose = isTensor(value) ? value.data : (value as number | number[])
      fields.push(
        compareClose(
          path,
          got as ArrayLike<number> | number | undefined,
          expectedClose,
          shape,
          tol,
        ),
      )
    }
  }
  if (fields.length === 0) {
    fields.push({ field: '(case)', ok: false, message: 'no expected field was compared' })
  }
  return { id: c.id, kind: c.kind, dtype, ok: fields.every((f) => f.ok), fields, skipped }
}

/** Runs and checks one case against the CPU module; runner errors become a failed result. */
export async function runAndCheckCpu(c: GoldenCase, dtype: Dtype): Promise<CaseResult> {
  try {
    return checkCase(c, await runCpuCase(c, dtype), dtype)
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    return {
      id: c.id,
      kind: c.kind,
      dtype,
      ok: false,
      fields: [{ field: '(run)', ok: false, message }],
      skipped: [],
    }
  }
}
