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
   * Folder URL holding one sub-folder per model id (`<modelBaseUrl>/<id>/manifest.json` and the files it
   * lists). Relative URLs resolve against the page. @default '/models/'
   */
  modelBaseUrl?: string
  /** Providers tried one at a time, so the result says which ran. @default ['webgpu', 'wasm'] */
  providers?: LocalProvider[]
  /** Where the policy integration runs: the WebGPU twin when available (`auto`), or the CPU module. @default 'auto' */
  integrator?: 'auto' | 'webgpu' | 'cpu'
  /**
   * Where onnxruntime-web loads its `.wasm`/`.mjs` files from (`ort.env.wasm.wasmPaths`). Set it to
   * a folder on your own origin so the page needs no third-party host.
   */
  wasmPaths?: string
  /** Cache API cache name for model files, or `false` to skip caching. @default 'piflow-models' */
  cache?: string | false
  /** Custom fetch for the manifest and model files. @default globalThis.fetch */
  fetch?: typeof fetch
  /** Called while model files download. */
  onDownloadProgress?: (progress: DownloadProgress) => void
}

/** Progress of a model file download. */
export interface DownloadProgress {
  /** Manifest key of the file, e.g. `student_4`. */
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
  /** Downloads, verifies and opens the model (done by the first `generate` otherwise). */
  load(model?: string, options?: RequestOptions): Promise<LocalRuntimeInfo>
  /** Releases sessions and GPU resources. */
  dispose(): Promise<void>
}

export type { Backend }
