/**
 * @module @piflow/policy
 * The shared π-Flow policy module: GM/DX policies, substep rollout, NFE schedules, the sampling loop,
 * π-ID bookkeeping and seeded noise. Pure functions over typed arrays, math only (wire formats live in
 * `@piflow/protocol`); CPU reference implementation (the WebGPU twin lives in `@piflow/policy/webgpu`).
 */
export type { DxPolicy } from './dx.ts'
export { createDxPolicy, DX_DEFAULT_EPS } from './dx.ts'
export type { PolicyErrorCode } from './errors.ts'
export {
  isPolicyError,
  PolicyError,
  PolicyOptionError,
  PolicyShapeError,
  PolicySigmaError,
  PolicyValueError,
} from './errors.ts'
export type { GmPolicy } from './gm.ts'
export { createGmPolicy, GM_DEFAULT_EPS } from './gm.ts'
export { boxMuller, philox4x32, randn } from './noise.ts'
export type {
  PiidSegmentOptions,
  PiidSegmentResult,
  Teacher,
  TrainSampleTOptions,
  TrainSampleTResult,
} from './piid.ts'
export { piidSegment, trainSampleT } from './piid.ts'
export type {
  ObservedRolloutOptions,
  PerSampleRolloutOptions,
  PerSampleRolloutResult,
  RolloutOptions,
  RolloutResult,
} from './rollout.ts'
export { rollout, rolloutPerSample, substepCount } from './rollout.ts'
export type { SampleOptions } from './sample.ts'
export { createCpuIntegrator, sample, segmentTemperature } from './sample.ts'
export { autoTemperature, buildSchedule, dynamicShift, SCHEDULE_DEFAULTS } from './schedule.ts'
export { unwarp, warp } from './shift.ts'
export type {
  DxOutput,
  DxPolicyOptions,
  DxSegmentOptions,
  FloatArray,
  GmOutput,
  GmPolicyOptions,
  LatentShape,
  Policy,
  PolicyOutput,
  PolicyRollout,
  Schedule,
  ScheduleOptions,
  ScheduleStep,
  SegmentIntegrator,
  SegmentSpec,
  StepInfo,
} from './types.ts'
export { activeGmKernel, configureGmKernel, type GmKernelChoice } from './wasm/gm-wasm.ts'
