/**
 * The edge integrates with the same WebAssembly GM kernel as Node and browsers: workerd refuses to
 * compile wasm from bytes, so src/policy-kernel.ts hands the policy module the bundled module.
 */
import { activeGmKernel, createGmPolicy } from '@piflow/policy'
import gmKernelBytes from '@piflow/policy/wasm/gm-kernel.wasm'
import { describe, expect, it } from 'vitest'
import '../src/policy-kernel.ts'

describe('policy GM kernel inside workerd', () => {
  it('runs the bundled wasm kernel for Float32Array policies', () => {
    expect(activeGmKernel()).toBe('wasm')
    const policy = createGmPolicy(
      {
        type: 'gm',
        k: 2,
        meansU: Float32Array.of(0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8),
        logweights: Float32Array.of(0, 0, 0.5, -0.5),
        logstds: Float32Array.of(-1),
      },
      Float32Array.of(0.3, -0.2, 0.1, 0.4),
      [1],
      { batch: 1, channels: 2, height: 1, width: 2 },
    )
    expect(policy.kernel).toBe('wasm')
    const u = policy.velocity(new Float32Array(4), Float32Array.of(0.2, -0.1, 0.0, 0.3), [0.5])
    expect(u.every(Number.isFinite)).toBe(true)
  })

  it('is needed: compiling wasm from bytes is disallowed here', () => {
    expect(gmKernelBytes).toBeInstanceOf(WebAssembly.Module)
    const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]) // the empty module
    expect(
      () => new (WebAssembly.Module as unknown as new (b: Uint8Array) => object)(bytes),
    ).toThrow()
  })
})
