/**
 * @module local/loader
 * Loading, apart from running: a model's manifest and tokenizer, its student sessions (downloaded,
 * sha256-checked, cached; onnxruntime-web loaded on first use) and the policy integrator (the WebGPU
 * twin on the generator's device, else the CPU module). Everything is memoised per generator, and a
 * failed load (offline, aborted) is forgotten so the next call tries again.
 */
/// <reference types="@webgpu/types" />
import { createTokenizer, type Manifest, parseManifest, type Tokenizer } from '@piflow/models'
import { createCpuIntegrator, type SegmentIntegrator } from '@piflow/policy'
import { LocalInferenceError } from '../errors.ts'
import { type FileSpec, loadFile } from './download.ts'
import {
  initRuntime,
  loadOrt,
  type OpenedSession,
  type OrtModule,
  openSession,
  requestGpuDevice,
  runtimeFile,
} from './ort.ts'
import type { DownloadProgress, LoadProgress, LocalOptions, LocalProvider } from './types.ts'

/** A model with its tokenizer, ready to open students. */
export interface LoadedModel {
  id: string
  manifest: Manifest
  tokenizer: Tokenizer
  /** one session per student file key and batch size (`student@1`) */
  sessions: Map<string, Promise<OpenedSession>>
}

/** What one run needs: the model, its student session for the NFE, the runtime and the integrator. */
export interface PreparedRun {
  model: LoadedModel
  opened: OpenedSession
  ort: OrtModule
  integrator: SegmentIntegrator<Float32Array>
  /** Why a provider or the WebGPU integrator was passed over, if one was. */
  reason: string | undefined
}

/**
 * One overall progress over a generator's loads: the bytes of every file (model files with their
 * manifest size from the start, the runtime once its response starts), then the stages after.
 */
const createLoadProgress = (report: ((progress: LoadProgress) => void) | undefined) => {
  const files = new Map<string, { loaded: number; total: number }>()
  const totals = () => {
    let loadedBytes = 0
    let totalBytes = 0
    for (const f of files.values()) {
      loadedBytes += f.loaded
      totalBytes += f.total
    }
    return { loadedBytes, totalBytes }
  }
  return {
    expect: (file: string, bytes: number) => files.set(file, { loaded: 0, total: bytes }),
    download: (p: DownloadProgress) => {
      files.set(p.file, { loaded: p.loadedBytes, total: p.totalBytes })
      report?.({ stage: 'download', ...totals(), file: p.file })
    },
    stage: (stage: 'compile' | 'ready') => report?.({ stage, ...totals() }),
  }
}

/** Resolves the model folder URL (relative ones against the page), with a trailing slash. */
const resolveBaseUrl = (url: string, option = 'modelBaseUrl') => {
  try {
    return new URL(url.endsWith('/') ? url : `${url}/`, globalThis.location?.href).href
  } catch (cause) {
    throw new LocalInferenceError(
      'invalid_option',
      `${option} ${JSON.stringify(url)} is not a URL (outside a page it must be absolute)`,
      { cause },
    )
  }
}

/**
 * The symbolic batch dimension of a student's inputs (the contract puts the batch first, e.g. `B`) set
 * to `batch`, for `freeDimensionOverrides`.
 */
const batchDimsOf = (manifest: Manifest, key: string, batch: number) => {
  const dims: Record<string, number> = {}
  for (const input of manifest.files[key]?.inputs ?? []) {
    const first = input.shape[0]
    if (typeof first === 'string') dims[first] = batch
  }
  return dims
}

/** The API's model routes (`…/v1/models/`) rather than a folder of model directories. */
const isApiModelRoute = (baseUrl: string) => new URL(baseUrl).pathname.endsWith('/v1/models/')

/** The loader of one generator; nothing is downloaded until `loadModel`. */
export const createModelLoader = (options: LocalOptions) => {
  const providers: readonly LocalProvider[] = options.providers ?? ['webgpu', 'wasm']
  if (providers.length === 0 || providers.some((p) => p !== 'webgpu' && p !== 'wasm')) {
    throw new LocalInferenceError('invalid_option', "providers must list 'webgpu' and/or 'wasm'")
  }
  const integratorChoice = options.integrator ?? 'auto'
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
  const baseUrl = resolveBaseUrl(options.modelBaseUrl ?? '/models/')
  const apiRoutes = isApiModelRoute(baseUrl)
  const progress = createLoadProgress(options.onProgress)
  const models = new Map<string, Promise<LoadedModel>>()
  /** Cache API writes still running (loadFile does not wait for them); `ready` waits. */
  const storing = new Set<Promise<void>>()
  let ort: Promise<OrtModule> | undefined
  let device: Promise<GPUDevice | string> | undefined
  let webGpuIntegrator: Promise<SegmentIntegrator<Float32Array>> | undefined
  // One device per generator, shared by ORT's WebGPU provider and the WebGPU policy integrator.
  const getDevice = () => {
    device ??= requestGpuDevice(options.allowSoftwareWebGpu === true)
    return device
  }
  const fileOf = (model: { id: string; manifest: Manifest }, key: string): FileSpec => {
    const file = model.manifest.files[key]
    if (!file) throw new LocalInferenceError('invalid_manifest', `Manifest has no file "${key}"`)
    const id = encodeURIComponent(model.id)
    const path = apiRoutes ? `${id}/files/${encodeURIComponent(key)}` : `${id}/${file.path}`
    return { key, url: new URL(path, baseUrl).href, sha256: file.sha256, bytes: file.bytes }
  }

  const download = async (file: FileSpec, signal?: AbortSignal) => {
    if ('bytes' in file) progress.expect(file.key, file.bytes)
    const { bytes, stored } = await loadFile(file, {
      fetch: fetchFn,
      cacheName: options.cache ?? 'piflow-models',
      onProgress: (p) => {
        options.onDownloadProgress?.(p)
        progress.download(p)
      },
      signal,
    })
    storing.add(stored)
    stored.then(() => storing.delete(stored))
    return bytes
  }

  /**
   * onnxruntime-web, once per generator: the WebGPU build (twice the WASM one) only when a device is
   * really there; with `wasmPaths`, its runtime file fetched and cached here; then initialised, which
   * overlaps the student's download (openStudent awaits both together).
   */
  const getOrt = (signal?: AbortSignal) => {
    if (!ort) {
      const loading = (async () => {
        const gpu = providers.includes('webgpu') && typeof (await getDevice()) !== 'string'
        const runtime = await loadOrt(gpu, options.wasmPaths, options.numThreads)
        if (options.wasmPaths) {
          const name = runtimeFile(gpu)
          const folder = resolveBaseUrl(options.wasmPaths, 'wasmPaths')
          const version = runtime.env.versions?.web ?? 'unknown'
          const url = new URL(name, folder).href
          runtime.env.wasm.wasmBinary = await download({ key: name, url, version }, signal)
        }
        await initRuntime(runtime)
        return runtime
      })()
      ort = loading
      loading.catch(() => {
        if (ort === loading) ort = undefined
      })
    }
    return ort
  }

  const loadModel = (id: string, signal?: AbortSignal) => {
    let model = models.get(id)
    if (!model) {
      // The runtime does not depend on the model: its download and start run beside the manifest's
      // and the tokenizer's (openStudent awaits the same promise; a failure is reported there).
      getOrt(signal).catch(() => {})
      model = (async () => {
        const path = apiRoutes ? encodeURIComponent(id) : `${id}/manifest.json`
        const url = new URL(path, baseUrl).href
        let manifest: Manifest
        try {
          const response = await fetchFn(url, signal ? { signal } : {})
          if (!response.ok) throw new Error(`HTTP ${response.status}`)
          const body = await response.json()
          // The API's `GET /v1/models/:id` wraps the manifest: `{ id, manifest, files }`.
          manifest = parseManifest(apiRoutes ? body?.manifest : body)
        } catch (cause) {
          if (signal?.aborted) throw signal.reason
          throw new LocalInferenceError('manifest_unavailable', `Cannot load the manifest ${url}`, {
            cause,
          })
        }
        if (!manifest.integration.includes('browser')) {
          throw new LocalInferenceError(
            'not_supported',
            `Model ${id} does not allow browser integration`,
          )
        }
        const bytes = await download(fileOf({ id, manifest }, manifest.text.tokenizer), signal)
        const tokenizer = createTokenizer(JSON.parse(new TextDecoder().decode(bytes)))
        return { id, manifest, tokenizer, sessions: new Map() }
      })()
      models.set(id, model)
      // A failed load (offline, aborted) must not be remembered.
      model.catch(() => models.delete(id))
    }
    return model
  }

  /**
   * The student of `nfe` for `batch` images per forward: its batch is fixed at session creation (see
   * `sessionOptions`), so another batch size opens (and keeps) a second session of the same file.
   */
  const openStudent = (model: LoadedModel, nfe: number, batch: number, signal?: AbortSignal) => {
    const key = model.manifest.sampling.perNfe[String(nfe)]!.onnx
    const sessionKey = `${key}@${batch}`
    let opened = model.sessions.get(sessionKey)
    if (!opened) {
      opened = (async () => {
        // The student and the runtime download side by side.
        const [bytes, runtime] = await Promise.all([
          download(fileOf(model, key), signal),
          getOrt(signal),
        ])
        progress.stage('compile')
        const batchDims = batchDimsOf(model.manifest, key, batch)
        return openSession(runtime, bytes, providers, getDevice, batchDims)
      })()
      model.sessions.set(sessionKey, opened)
      opened.catch(() => model.sessions.delete(sessionKey))
    }
    return opened
  }

  /** The integrator, and why it is not the WebGPU one when `auto` wanted it. */
  const integratorFor = async (): Promise<{
    integrator: SegmentIntegrator<Float32Array>
    reason?: string
  }> => {
    if (integratorChoice !== 'cpu') {
      webGpuIntegrator ??= (async () => {
        const got = await getDevice()
        if (typeof got === 'string') throw new LocalInferenceError('no_webgpu', got)
        // The WebGPU twin is a separate chunk: pages without WebGPU never download it.
        const { createWebGpuIntegrator } = await import('@piflow/policy/webgpu')
        return createWebGpuIntegrator(got)
      })()
      try {
        return { integrator: await webGpuIntegrator }
      } catch (error) {
        if (integratorChoice === 'webgpu') throw error
        return {
          integrator: createCpuIntegrator<Float32Array>(),
          reason: `policy on the CPU: ${(error as Error).message}`,
        }
      }
    }
    return { integrator: createCpuIntegrator<Float32Array>() }
  }
  const ready = new WeakSet<OpenedSession>()

  /** Opens the student for `nfe` (a normalised value) and `count` images, and picks the integrator. */
  const prepare = async (
    model: LoadedModel,
    nfe: number,
    count: number,
    signal?: AbortSignal,
  ): Promise<PreparedRun> => {
    const opened = await openStudent(model, nfe, count, signal)
    const { integrator, reason } = await integratorFor()
    if (!ready.has(opened)) {
      ready.add(opened)
      // Ready means cached too: a reload after it finds every file in the Cache API. The writes ran
      // beside the session creation, which takes longer, so this rarely waits.
      await Promise.all(storing)
      progress.stage('ready')
    }
    const why = [opened.reason, reason].filter(Boolean).join('; ')
    return { model, opened, ort: await getOrt(signal), integrator, reason: why || undefined }
  }

  /** Releases sessions and GPU resources; later calls load again. */
  const dispose = async () => {
    for (const model of models.values()) {
      const loaded = await model.catch(() => undefined)
      for (const opened of loaded?.sessions.values() ?? []) {
        await (await opened.catch(() => undefined))?.session.release()
      }
    }
    models.clear()
    const got = await device
    if (got && typeof got !== 'string') got.destroy()
    device = undefined
    webGpuIntegrator = undefined
  }

  return { loadModel, prepare, dispose }
}

export type ModelLoader = ReturnType<typeof createModelLoader>
