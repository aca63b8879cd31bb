/**
 * @module bench/support/shapes
 * What the policy benches share (bench/policy.ts on the CPU, bench/policy-webgpu.ts on WebGPU), so both
 * time the same shapes, schedule segment and inputs: the released models' GM shapes, their first NFE
 * segment, reproducible network outputs and the median used for every timing.
 */
import {
  buildSchedule,
  type FloatArray,
  type LatentShape,
  randn,
  type ScheduleStep,
} from '@piflow/policy'

/** One bench shape: batch, GM components, channels, latent size, and the schedule it samples with. */
export interface BenchShape {
  name: string
  B: number
  K: number
  C: number
  H: number
  W: number
  nfe: number
  shift: number
  fs: number
}

export const BENCH_SHAPES: BenchShape[] = [
  {
    name: 'pi-FLUX.1 / pi-Qwen-Image 1024²',
    B: 1,
    K: 8,
    C: 16,
    H: 128,
    W: 128,
    nfe: 4,
    shift: 3.2,
    fs: 0.5,
  },
  {
    name: 'ImageNet DiT 256² (latent 32²)',
    B: 1,
    K: 32,
    C: 4,
    H: 32,
    W: 32,
    nfe: 1,
    shift: 1,
    fs: 1,
  },
  {
    // The shipped model (models/piflow-emoji): where the backend's integration-share target applies.
    name: 'piflow-emoji default model 32²',
    B: 1,
    K: 8,
    C: 3,
    H: 32,
    W: 32,
    nfe: 4,
    shift: 3.2,
    fs: 0.5,
  },
]

/** The GM policy's eps in every bench row. */
export const BENCH_EPS = 1e-4

/** `BENCH_REPEATS` from the environment, else `fallback`. */
export const benchRepeats = (fallback: number): number =>
  Number(process.env['BENCH_REPEATS'] ?? fallback)

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** The first NFE segment of the shape's schedule (σ_src = 1), the one every bench times. */
export const firstStep = (s: BenchShape): ScheduleStep =>
  buildSchedule({ nfe: s.nfe, shift: s.shift, finalStepSizeScale: s.fs }).steps[0]

/** The shape in the policy module's terms. */
export const policyShape = (s: BenchShape): LatentShape => ({
  batch: s.B,
  channels: s.C,
  height: s.H,
  width: s.W,
})

/**
 * Reproducible GM network output and source state for a shape: noise with fixed seeds (means 1,
 * log-weights 2, x_src 3) and log-std −2, in the array type `alloc` makes.
 */
export function gmBenchInputs<T extends FloatArray>(s: BenchShape, alloc: (length: number) => T) {
  const { B, K, C } = s
  const HW = s.H * s.W
  const logstds = alloc(1)
  logstds[0] = -2
  return {
    meansU: randn(alloc(B * K * C * HW), 1),
    logweights: randn(alloc(B * K * HW), 2),
    logstds,
    xSrc: randn(alloc(B * C * HW), 3),
  }
}
