/**
 * @module local/types
 * Types of `@piflow/sdk/local`, kept apart from its code so the root entry can name them for free.
 */
import type {
  Backend,
  GenerateInput,
  Generation,
  GenerationStream,
  RequestOptions,
  Result,
  StreamCallbacks,
  StreamEvent,
} from '../types.ts'

/** onnxruntime-web execution providers the local path tries, in order. */
export type LocalProvider = 'webgpu' | 'wasm'

/** Options of {@link LocalGenerator}. */
export interface LocalOptions {
  /**
   * Where models come from: a folder with one sub-folder per model id (`<modelBaseUrl>/<id>/manifest.json`
   * and the files it lists), or the API's own model routes, a URL ending in `/v1/models/`
   * (`GET /v1/models/<id>` for the manifest, `/v1/models/<id>/files/<key>` for the files; public, no
   * key). Relative URLs resolve against the page. @default '/models/'
   */
  modelBaseUrl?: string
  /** Providers tried one at a time, so the result says which ran. @default ['webgpu', 'wasm'] */
  providers?: LocalProvider[]
  /** Where the policy integration runs: the WebGPU twin when available (`auto`), or the CPU module. @default 'auto' */
  integrator?: 'auto' | 'webgpu' | 'cpu'
  /**
   * Folder URL of onnxruntime-web's runtime files (`ort-wasm-simd-threaded.wasm`, and for WebGPU
   * `ort-wasm-simd-threaded.asyncify.wasm`; the `.mjs` next to them for threads), e.g. on your own
   * origin. When set, the SDK fetches the `.wasm` itself, with progress, and keeps it in the Cache API
   * like the model (keyed by URL + onnxruntime-web version); without it, onnxruntime-web fetches it
   * from its default location on every load.
   */
  wasmPaths?: string
  /**
   * onnxruntime-web's WASM threads (`env.wasm.numThreads`, one setting per page). Threads need a
   * cross-origin isolated page (`Cross-Origin-Opener-Policy: same-origin` and
   * `Cross-Origin-Embedder-Policy: require-corp`), else one thread runs whatever is set.
   * @default onnxruntime-web's own choice: on an isolated page min(4, ⌈cores / 2⌉), else 1
   */
  numThreads?: number
  /**
   * Use a software WebGPU adapter (SwiftShader, llvmpipe: `isFallbackAdapter`). Off by default: such
   * an adapter is many times slower than WASM (the result's `reason` says it was passed over).
   * @default false
   */
  allowSoftwareWebGpu?: boolean
  /** Cache API cache name for model files, or `false` to skip caching. @default 'piflow-models' */
  cache?: string | false
  /** Custom fetch for the manifest and model files. @default globalThis.fetch */
  fetch?: typeof fetch
  /** Called while each file (model files, the runtime) downloads or is read from the cache. */
  onDownloadProgress?: (progress: DownloadProgress) => void
  /**
   * One overall progress of a load: `download` (all files of it together, model and runtime),
   * `compile` (the runtime and session being created), then `ready`.
   */
  onProgress?: (progress: LoadProgress) => void
}

/** Overall progress of loading a model for a run. */
export interface LoadProgress {
  stage: 'download' | 'compile' | 'ready'
  /** Bytes of all files of this load so far (cached ones count at once). */
  loadedBytes: number
  /**
   * Their total as known now: the runtime file's size is known once its response starts (its
   * Content-Length), so the total may grow during `download`.
   */
  totalBytes: number
  /** The file the last bytes belong to (during `download`). */
  file?: string
}

/** Progress of a model file download. */
export interface DownloadProgress {
  /** Manifest key of the file, e.g. `student`; for the runtime, its file name (`ort-wasm-simd-threaded.wasm`). */
  file: string
  loadedBytes: number
  totalBytes: number
  /** True when the file came from the cache without a download. */
  cached: boolean
}

/** Progress after each network evaluation: the remote stream's `progress` event. */
export type LocalStepProgress = Extract<StreamEvent, { type: 'progress' }>

/** The normalised request, reported before the first network evaluation. */
export interface LocalStartInfo {
  id: string
  model: string
  seed: number
  nfe: number
  count: number
}

/** Options of one local generation. */
export interface LocalGenerateOptions extends RequestOptions {
  onStart?: (info: LocalStartInfo) => void
  onProgress?: (progress: LocalStepProgress) => void
}

/** What a loaded model runs on. */
export interface LocalRuntimeInfo {
  model: string
  /** The onnxruntime-web provider whose session was created. */
  provider: LocalProvider
  /** Where the policy integration runs. */
  integrator: 'webgpu' | 'cpu'
  /** Why the first providers tried were passed over (e.g. a software WebGPU adapter), if they were. */
  reason?: string
}

/** In-browser generator: same manifest, noise, schedule and policy as the server. */
export interface LocalGenerator {
  /** Generates in this page; `backend` of the result is the provider that ran. */
  generate(input: GenerateInput, options?: LocalGenerateOptions): Promise<Result<Generation>>
  /**
   * The same generation as the remote `client.stream()` events: `id`, `progress`×nfe, `image`×count,
   * `done`. Iterate it with `for await`, or pass callbacks and `await stream.done()`.
   */
  stream(input: GenerateInput, options?: LocalGenerateOptions & StreamCallbacks): GenerationStream
  /**
   * Downloads, verifies and opens the model for its default NFE and one image per run (done by the
   * first `generate` otherwise; a `count` > 1 opens a session of that batch size when first asked).
   */
  load(model?: string, options?: RequestOptions): Promise<LocalRuntimeInfo>
  /** Releases sessions and GPU resources. */
  dispose(): Promise<void>
}

export type { Backend }
