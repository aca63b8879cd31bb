/**
 * `--execution-provider webgpu`: the student on a GPU through onnxruntime's bundled Dawn. Without a
 * GPU here, SwiftShader's Vulkan ICD (from the Chromium package) stands in as the adapter: a CPU
 * emulation, so this checks the path and its numbers, never its speed. On a GPU host the same flag
 * runs on the Vulkan driver (measured on an H200: see backend/README.md).
 */
import { decodeSafetensors, encodeSafetensors } from '@piflow/protocol'
import { describe, expect, it } from 'vitest'
import { type BackendService, startBackend } from '../../scripts/local-stack.ts'
import { swiftShaderEnv } from '../../test/webgpu/node-dawn.ts'
import { forward, inputs } from './requests.ts'

const swiftShader = swiftShaderEnv()

/** The model's outputs for one fixed input. */
async function forwardOutputs(backend: BackendService) {
  const response = await forward(backend, encodeSafetensors(inputs(11, 1, 0.7)))
  expect(response.status).toBe(200)
  return decodeSafetensors(new Uint8Array(await response.arrayBuffer())).tensors
}

describe('WebGPU execution provider', () => {
  it('refuses to start, saying why, when no adapter can be found', async () => {
    // An ICD list naming no real driver: Vulkan finds no device whatever this machine has.
    const start = startBackend({
      args: ['--execution-provider', 'webgpu'],
      env: { VK_ICD_FILENAMES: '/nonexistent/piflow-no-driver.json' },
    })
    await expect(start).rejects.toThrow(/execution provider webgpu unavailable: WebGPU session/)
  })

  it.skipIf(!swiftShader)(
    'computes the forward the CPU provider computes (SwiftShader adapter; skipped without Chromium)',
    async () => {
      const backends = await Promise.all([
        startBackend({ args: ['--execution-provider', 'cpu'] }),
        startBackend({ args: ['--execution-provider', 'webgpu'], env: swiftShader! }),
      ])
      try {
        const [cpu, gpu] = backends
        const ready = (await (await fetch(`${gpu!.url}/readyz`)).json()) as Record<string, unknown>
        expect(ready.executionProvider).toBe('webgpu')
        const [expected, actual] = await Promise.all([forwardOutputs(cpu!), forwardOutputs(gpu!)])
        for (const name of ['means_u', 'logweights', 'logstds']) {
          const want = expected[name]!.data as Float32Array
          const got = actual[name]!.data as Float32Array
          expect(got.length).toBe(want.length)
          let worst = 0
          for (let i = 0; i < want.length; i++) {
            worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)))
          }
          // Different kernels, same float32 math: onnxruntime's WebGPU EP agrees to ~5e-5 here.
          expect(worst, name).toBeLessThan(1e-3)
        }
      } finally {
        await Promise.all(backends.map((b) => b.stop()))
      }
    },
    180_000,
  )
})
