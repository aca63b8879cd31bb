/**
 * @module local/ort
 * onnxruntime-web, loaded on first use (an optional peer dependency), and session creation that tries
 * one execution provider at a time: ORT given `['webgpu', 'wasm']` falls back silently, and the result
 * must say which provider actually ran.
 */
/// <reference types="@webgpu/types" />
import type * as Ort from 'onnxruntime-web'
import { LocalInferenceError } from '../errors.ts'
import type { LocalProvider } from './types.ts'

export type OrtModule = typeof Ort

/** An opened student: the provider it runs on and, for WebGPU, the device it shares with the policy. */
export interface OpenedSession {
  session: Ort.InferenceSession
  provider: LocalProvider
  device: GPUDevice | undefined
  /** Why the providers tried before this one were passed over, when they were. */
  reason: string | undefined
}

/**
 * The WebAssembly runtime file each onnxruntime-web build loads (onnxruntime-web 1.30: the WebGPU
 * build's is the asyncify one). Fetched by the SDK when `wasmPaths` is set, so it gets progress and
 * the Cache API like the model; ORT then takes the bytes as `env.wasm.wasmBinary`.
 */
export const runtimeFile = (withWebGpu: boolean) =>
  withWebGpu ? 'ort-wasm-simd-threaded.asyncify.wasm' : 'ort-wasm-simd-threaded.wasm'

/**
 * Imports onnxruntime-web: the WebGPU build when a WebGPU provider may be tried (it also runs WASM),
 * else the smaller WASM-only build. `wasmPaths` points ORT at self-hosted `.wasm`/`.mjs` files.
 */
export const loadOrt = async (
  withWebGpu: boolean,
  wasmPaths: string | undefined,
  numThreads: number | undefined,
) => {
  let ort: OrtModule
  try {
    ort = withWebGpu ? await import('onnxruntime-web/webgpu') : await import('onnxruntime-web/wasm')
  } catch (cause) {
    throw new LocalInferenceError(
      'runtime_missing',
      'Local generation needs onnxruntime-web: npm install onnxruntime-web',
      { cause },
    )
  }
  if (wasmPaths) ort.env.wasm.wasmPaths = wasmPaths
  if (numThreads !== undefined) ort.env.wasm.numThreads = numThreads
  return ort
}

/**
 * The smallest ONNX model (ir_version 8, opset 17, one Identity node y = x over float[1]; what
 * `onnx.helper.make_model` serialises, 65 bytes). Opening it initialises onnxruntime-web's
 * WebAssembly runtime, which otherwise happens inside the student's session creation.
 */
// biome-ignore format: 65 bytes, kept on three lines
const IDENTITY_MODEL = Uint8Array.of(
  8, 8, 58, 55, 10, 16, 10, 1, 120, 18, 1, 121, 34, 8, 73, 100, 101, 110, 116, 105, 116, 121, 18, 1,
  116, 90, 15, 10, 1, 120, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2, 8, 1, 98, 15, 10, 1, 121, 18, 10, 10, 8,
  8, 1, 18, 4, 10, 2, 8, 1, 66, 4, 10, 0, 16, 17,
)

/**
 * Initialises the runtime (compiles and instantiates its .wasm, starts its threads) now, so that it
 * runs while the student still downloads: ~0.6–0.7 s in Chromium on the development machine, which
 * then no longer adds to the student's session creation. Failures are left to the student's
 * session, which reports them with its provider.
 */
export const initRuntime = async (ort: OrtModule) => {
  try {
    const session = await ort.InferenceSession.create(IDENTITY_MODEL, {
      executionProviders: ['wasm'],
    })
    await session.release()
  } catch {
    // openSession tries again and says why
  }
}

/** Whether `adapter` is a software one (SwiftShader, llvmpipe): slower than ORT's WASM build. */
const isSoftwareAdapter = (adapter: GPUAdapter) => {
  const info = adapter.info as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined
  // `info.isFallbackAdapter` (Chrome 131+); the older `adapter.isFallbackAdapter`; else the name.
  const flag =
    info?.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter
  if (flag !== undefined) return flag
  return /swiftshader|llvmpipe|software/i.test(
    `${info?.vendor} ${info?.architecture} ${info?.description}`,
  )
}

/**
 * A WebGPU device, or why there is none (no `navigator.gpu`, no adapter, a software adapter that is
 * not allowed, device refused).
 */
export const requestGpuDevice = async (allowSoftware: boolean): Promise<GPUDevice | string> => {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu
  if (!gpu) return 'navigator.gpu is not available'
  try {
    const adapter = await gpu.requestAdapter()
    if (!adapter) return 'no WebGPU adapter'
    if (!allowSoftware && isSoftwareAdapter(adapter)) {
      const { vendor, architecture } = adapter.info ?? {}
      return (
        `the WebGPU adapter is a software (fallback) one (${vendor || '?'} ${architecture || ''}`.trim() +
        '), slower than WASM; allowSoftwareWebGpu: true uses it anyway'
      )
    }
    return await adapter.requestDevice({
      // ORT's WebGPU provider wants the adapter's larger buffer limits when the model needs them.
      requiredLimits: {
        maxBufferSize: adapter.limits.maxBufferSize,
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      },
    })
  } catch (error) {
    return `WebGPU device request failed: ${(error as Error).message}`
  }
}

/**
 * Session options per provider. Both get the batch as a fixed size (`freeDimensionOverrides` on the
 * inputs' symbolic batch dimension, e.g. `B`): with static shapes, graph optimisation folds the
 * network's Shape/Gather/Slice arithmetic at session creation. WASM gets `basic` optimisation (constant
 * folding, redundant-node removal): measured in Chromium on the v1 and v2 students (bench/sdk.ts), it
 * creates the session faster than `all` and runs as fast — `all`'s extra fusions buy the WASM kernels
 * nothing on these networks. WebGPU keeps `all` (not measured on a real GPU here).
 */
export const sessionOptions = (
  provider: LocalProvider,
  batchDims: Record<string, number>,
): Ort.InferenceSession.SessionOptions => ({
  executionProviders: [provider],
  graphOptimizationLevel: provider === 'wasm' ? 'basic' : 'all',
  freeDimensionOverrides: batchDims,
})

/**
 * Creates a session on the first provider that works, in `providers` order. WebGPU sessions run on
 * `device` (shared with the WebGPU policy integrator so both use one queue). `batchDims` fixes the
 * symbolic batch dimension(s), so the session runs that batch size only.
 */
export const openSession = async (
  ort: OrtModule,
  model: Uint8Array,
  providers: readonly LocalProvider[],
  getDevice: () => Promise<GPUDevice | string>,
  batchDims: Record<string, number>,
): Promise<OpenedSession> => {
  const failures: string[] = []
  for (const provider of providers) {
    let device: GPUDevice | undefined
    if (provider === 'webgpu') {
      const got = await getDevice()
      if (typeof got === 'string') {
        failures.push(`webgpu: ${got}`)
        continue
      }
      device = got
      ort.env.webgpu.device = device
    }
    try {
      const session = await ort.InferenceSession.create(model, sessionOptions(provider, batchDims))
      return { session, provider, device, reason: failures.join('; ') || undefined }
    } catch (error) {
      failures.push(`${provider}: ${(error as Error).message}`)
    }
  }
  throw new LocalInferenceError(
    'no_provider',
    `No onnxruntime-web provider could open the model (${failures.join('; ')})`,
  )
}
