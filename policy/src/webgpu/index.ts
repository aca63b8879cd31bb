/**
 * @module @piflow/policy/webgpu
 * The WebGPU twin of the policy module: the same SegmentIntegrator contract as the CPU reference
 * (`createCpuIntegrator`), running GM/DX policies and the substep rollout on a caller-supplied
 * GPUDevice, held to the same golden conformance cases. See README.md in this folder.
 */
export { DROPPED_LOGWEIGHT, WORKGROUP_SIZE } from './common.wgsl.ts'
export { DX_WGSL } from './dx.wgsl.ts'
export { PolicyDeviceError } from './errors.ts'
export type {
  DxVelocityResult,
  GmVelocityResult,
  VelocityQuery,
  WebGpuPolicyEvaluator,
} from './evaluator.ts'
export { createWebGpuPolicyEvaluator } from './evaluator.ts'
export type { GmWgslOptions } from './gm.wgsl.ts'
export { gmWgsl } from './gm.wgsl.ts'
export type {
  GpuDxOutput,
  GpuGmOutput,
  GpuPolicyOutput,
  WebGpuIntegrator,
  WebGpuIntegratorOptions,
} from './integrator.ts'
export { createWebGpuIntegrator } from './integrator.ts'
