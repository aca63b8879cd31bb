/**
 * @module webgpu/errors
 * The WebGPU twin throws the policy module's own errors (PolicyShapeError, PolicyOptionError, …) for
 * bad input, and this subclass when the GPU itself refuses the work (validation or out-of-memory error
 * scope, lost device, failed read-back), keeping the device's message and the original as `cause`.
 */
import { PolicyError } from '../errors.ts'

/**
 * The GPUDevice could not run the policy kernels. `code` is `invalid_option` because the device is a
 * caller-supplied option (lost, or lacking a limit the segment needs).
 */
export class PolicyDeviceError extends PolicyError {
  override name = 'PolicyDeviceError'
  constructor(message: string, options?: ErrorOptions) {
    super('invalid_option', message, options)
  }
}
