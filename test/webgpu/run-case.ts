/// <reference types="@webgpu/types" />
/**
 * @module test/webgpu/run-case
 * Runs golden cases against the WebGPU twin on a given GPUDevice and checks them with the shared
 * conformance code (test/conformance/cpu.ts `checkCase`, `runIntegratorCase`). Runtime-neutral: the
 * same module runs in headless Chromium (bundled by chromium.ts) and in Node with Dawn (node-dawn.ts).
 */
import {
  createWebGpuIntegrator,
  createWebGpuPolicyEvaluator,
  type WebGpuIntegrator,
  type WebGpuPolicyEvaluator,
} from '@piflow/policy/webgpu'
import type { GoldenCase, Tolerance, Value } from '../conformance/cases.ts'
import { isBoolTensor, isTensor } from '../conformance/cases.ts'
import {
  type CaseResult,
  checkCase,
  floatArray,
  latentShape,
  numberOf,
  type Outputs,
  policyOutputOf,
  runIntegratorCase,
  tensorOf,
} from '../conformance/cpu.ts'

/** Golden kinds the WebGPU twin implements (schedules, π-ID bookkeeping are CPU-only). */
export const WEBGPU_KINDS: readonly string[] = [
  'gm_velocity',
  'dx_velocity',
  'rollout',
  'sampling_loop',
]

/**
 * Tolerance of the half-float means variant (`f16: true`), per kind, replacing the golden float32 pair
 * (velocity 1e-4/1e-5, rollouts 2e-3/2e-4). The GM means are rounded to binary16 (relative error
 * ≤ 2⁻¹¹ ≈ 4.9e-4 each) before any arithmetic; that error reaches x0_hat as is and u amplified by
 * 1/σ_t. Measured on SwiftShader over the golden cases, the smallest rtol = atol that passes them all
 * is ≈ 2.6e-3 (gm_k2_tiny_std, σ_t = 0.02: u off by 1.5e-2 at |u| ≈ 4.9); 1e-2 leaves ~4× margin.
 * DX has no half variant: its cases keep the float32 tolerance.
 */
const F16_BOUND: Tolerance = { rtol: 1e-2, atol: 1e-2 }
export const F16_TOLERANCE: Readonly<Record<string, Tolerance>> = {
  gm_velocity: F16_BOUND,
  rollout: F16_BOUND,
  sampling_loop: F16_BOUND,
}

/** Which variant of the twin ran a case. */
export type Variant = 'f32' | 'f16'

/** A CaseResult tagged with the variant; plain JSON, so it crosses page.evaluate / stdout. */
export interface WebGpuCaseResult extends CaseResult {
  variant: Variant
}

/** One device's tools, created once per variant and reused by every case. */
export interface WebGpuTools {
  integrator: WebGpuIntegrator
  evaluator: WebGpuPolicyEvaluator
}

export const createTools = (device: GPUDevice, variant: Variant): WebGpuTools => ({
  integrator: createWebGpuIntegrator(device, { f16: variant === 'f16' }),
  evaluator: createWebGpuPolicyEvaluator(device, { f16: variant === 'f16' }),
})

/** Whether a case runs in a variant (DX cases have no half-float variant). */
export function appliesTo(c: GoldenCase, variant: Variant): boolean {
  if (!WEBGPU_KINDS.includes(c.kind)) return false
  if (variant === 'f32') return true
  return c.kind in F16_TOLERANCE && !usesDx(c)
}

function usesDx(c: GoldenCase): boolean {
  if (c.kind === 'dx_velocity') return true
  const policy = c.inputs['policy'] as Record<string, Value> | undefined
  return policy?.['type'] === 'dx' || c.inputs['policy_type'] === 'dx'
}

/** Runs and checks one case; a thrown error becomes a failed result naming it. */
export async function runWebGpuCase(
  c: GoldenCase,
  tools: WebGpuTools,
  variant: Variant,
): Promise<WebGpuCaseResult> {
  const checked =
    variant === 'f16' ? { ...c, tolerance: { ...c.tolerance, float32: F16_TOLERANCE[c.kind] } } : c
  try {
    const outputs = await produce(c, tools)
    return { ...checkCase(checked, outputs, 'float32', { requireAll: false }), variant }
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    return {
      id: c.id,
      kind: c.kind,
      dtype: 'float32',
      ok: false,
      fields: [{ field: '(run)', ok: false, message }],
      skipped: [],
      variant,
    }
  }
}

async function produce(c: GoldenCase, { integrator, evaluator }: WebGpuTools): Promise<Outputs> {
  const inputs = c.inputs
  if (c.kind === 'rollout' || c.kind === 'sampling_loop') {
    return runIntegratorCase(c, 'float32', integrator as never)
  }
  const xSrc = tensorOf(inputs['x_src'], 'x_src')
  const shape = latentShape(xSrc)
  const out: Outputs = new Map()
  if (c.kind === 'gm_velocity') {
    const mask = inputs['dropout_mask']
    const r = await evaluator.gmVelocity({
      output: policyOutputOf(inputs, 'float32') as never,
      xSrc: floatArray(xSrc, 'float32') as Float32Array,
      sigmaSrc: perSample(inputs['sigma_src'], shape.batch),
      xT: floatArray(tensorOf(inputs['x_t'], 'x_t'), 'float32') as Float32Array,
      sigmaT: perSample(inputs['sigma_t'], shape.batch),
      shape,
      eps: numberOf(inputs['eps'], 'eps'),
      temperature: numberOf(inputs['temperature'] ?? 1, 'temperature'),
      ...(isBoolTensor(mask) ? { dropoutMask: mask.data } : {}),
    })
    out.set('means_x0', r.meansX0)
    out.set('var_x0', r.varX0)
    out.set('logweights_effective', r.logweightsEffective)
    out.set('posterior_weights', r.posteriorWeights)
    out.set('x0_hat', r.x0Hat)
    out.set('u', r.u)
    return out
  }
  if (c.kind === 'dx_velocity') {
    const queries = inputs['queries']
    if (!Array.isArray(queries)) throw new Error('input queries must be a list')
    for (const [i, q] of queries.entries()) {
      const query = q as Record<string, Value>
      const r = await evaluator.dxVelocity({
        output: policyOutputOf(inputs, 'float32') as never,
        xSrc: floatArray(xSrc, 'float32') as Float32Array,
        sigmaSrc: perSample(inputs['sigma_src'], shape.batch),
        xT: floatArray(tensorOf(query['x_t'], 'x_t'), 'float32') as Float32Array,
        sigmaT: perSample(query['sigma_t'], shape.batch),
        shape,
        segmentSize: numberOf(inputs['segment_size'], 'segment_size'),
        shift: numberOf(inputs['shift'], 'shift'),
        mode: inputs['mode'] as 'grid' | 'polynomial',
        eps: numberOf(inputs['eps'], 'eps'),
      })
      out.set('nodes_x0', r.nodesX0)
      out.set(`results[${i}].x0_hat`, r.x0Hat)
      out.set(`results[${i}].u`, r.u)
    }
    return out
  }
  throw new Error(`kind ${c.kind} has no WebGPU form`)
}

/** σ inputs are a (B) tensor or one scalar for the batch. */
function perSample(value: Value | undefined, batch: number): Float64Array {
  if (typeof value === 'number') return new Float64Array(batch).fill(value)
  if (!isTensor(value)) throw new Error('σ input must be a number or a (B) tensor')
  return Float64Array.from(value.data)
}

/** Runs every applicable case in both variants on one device (one tool set per variant). */
export async function runWebGpuCases(
  device: GPUDevice,
  cases: readonly GoldenCase[],
): Promise<WebGpuCaseResult[]> {
  const results: WebGpuCaseResult[] = []
  for (const variant of ['f32', 'f16'] as const) {
    const tools = createTools(device, variant)
    try {
      for (const c of cases) {
        if (appliesTo(c, variant)) results.push(await runWebGpuCase(c, tools, variant))
      }
    } finally {
      tools.integrator.destroy()
      tools.evaluator.destroy()
    }
  }
  return results
}
