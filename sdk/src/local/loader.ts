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
  loadOrt,
  type OpenedSession,
  type OrtModule,
  openSession,
  requestGpuDevice,
} from './ort.ts'
import type { LocalOptions, LocalProvider } from './types.ts'

/** A model with its tokenizer, ready to open students. */
export interface LoadedModel {
  id: string
  manifest: Manifest
  tokenizer: Tokenizer
  /** one session per student file key */
  sessions: Map<string, Promise<OpenedSession>>
}

/** What one run needs: the model, its student session for the NFE, the runtime and the integrator. */
export interface PreparedRun {
  model: LoadedModel
  opened: OpenedSession
  ort: OrtModule
  integrator: SegmentIntegrator<Float32Array>
}

/** Resolves the model folder URL (relative ones against the page), with a trailing slash. */
const resolveBaseUrl = (url: string) => {
  try {
    return new URL(url.endsWith('/') ? url : `${url}/`, globalThis.location?.href).href
  } catch (cause) {
    throw new LocalInferenceError(
      'invalid_option',
      `modelBaseUrl ${JSON.stringify(url)} is not a URL (outside a page it must be absolute)`,
      { cause },
    )
  }
}

/** The loader of one generator; nothing is downloaded until `loadModel`. */
export const createModelLoader = (options: LocalOptions) => {
  const providers: readonly LocalProvider[] = options.providers ?? ['webgpu', 'wasm']
  if (providers.length === 0 || providers.some((p) => p !== 'webgpu' && p !== 'wasm')) {
    throw new LocalInferenceError('invalid_option', "providers must list 'webgpu' and/or 'wasm'")
  }
  const integratorChoice = options.integrator ?? 'auto'
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
  const baseUrl = resolveBaseUrl(options.modelBaseUrl ?? '/models/')
  const models = new Map<string, Promise<LoadedModel>>()
  let ort: Promise<OrtModule> | undefined
  let device: Promise<GPUDevice | string> | undefined
  let webGpuIntegrator: Promise<SegmentIntegrator<Float32Array>> | undefined
  // One device per generator, shared by ORT's WebGPU provider and the WebGPU policy integrator.
  const getDevice = () => {
    device ??= requestGpuDevice()
    return device
  }
  const fileOf = (model: { id: string; manifest: Manifest }, key: string): FileSpec => {
    const file = model.manifest.files[key]
    if (!file) throw new LocalInferenceError('invalid_manifest', `Manifest has no file "${key}"`)
    return {
      key,
      url: new URL(`${model.id}/${file.path}`, baseUrl).href,
      sha256: file.sha256,
      bytes: file.bytes,
    }
  }

  const download = (file: FileSpec, signal?: AbortSignal) =>
    loadFile(file, {
      fetch: fetchFn,
      cacheName: options.cache ?? 'piflow-models',
      onProgress: options.onDownloadProgress,
      signal,
    })

  const loadModel = (id: string, signal?: AbortSignal) => {
    let model = models.get(id)
    if (!model) {
      model = (async () => {
        const url = new URL(`${id}/manifest.json`, baseUrl).href
        let manifest: Manifest
        try {
          const response = await fetchFn(url, signal ? { signal } : {})
          if (!response.ok) throw new Error(`HTTP ${response.status}`)
          manifest = parseManifest(await response.json())
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

  const openStudent = (model: LoadedModel, nfe: number, signal?: AbortSignal) => {
    const key = model.manifest.sampling.perNfe[String(nfe)]!.onnx
    let opened = model.sessions.get(key)
    if (!opened) {
      opened = (async () => {
        const bytes = await download(fileOf(model, key), signal)
        // The WebGPU build of ORT is twice the WASM one: load it only when a device is really there.
        ort ??= (async () => {
          const gpu = providers.includes('webgpu') && typeof (await getDevice()) !== 'string'
          return loadOrt(gpu, options.wasmPaths)
        })()
        return openSession(await ort, bytes, providers, getDevice)
      })()
      model.sessions.set(key, opened)
      opened.catch(() => model.sessions.delete(key))
    }
    return opened
  }

  const integratorFor = async (): Promise<SegmentIntegrator<Float32Array>> => {
    if (integratorChoice !== 'cpu') {
      webGpuIntegrator ??= (async () => {
        const got = await getDevice()
        if (typeof got === 'string') throw new LocalInferenceError('no_webgpu', got)
        // The WebGPU twin is a separate chunk: pages without WebGPU never download it.
        const { createWebGpuIntegrator } = await import('@piflow/policy/webgpu')
        return createWebGpuIntegrator(got)
      })()
      try {
        return await webGpuIntegrator
      } catch (error) {
        if (integratorChoice === 'webgpu') throw error
      }
    }
    return createCpuIntegrator<Float32Array>()
  }

  /** Opens the student for `nfe` (a normalised value) and picks the integrator. */
  const prepare = async (
    model: LoadedModel,
    nfe: number,
    signal?: AbortSignal,
  ): Promise<PreparedRun> => {
    const opened = await openStudent(model, nfe, signal)
    const integrator = await integratorFor()
    if (!ort) throw new LocalInferenceError('runtime_missing', 'onnxruntime-web is not loaded')
    return { model, opened, ort: await ort, integrator }
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
