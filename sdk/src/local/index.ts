/**
 * @module @piflow/sdk/local
 * In-browser generation: the model's manifest and ONNX student are downloaded (sha256-checked, cached),
 * the student runs on onnxruntime-web (WebGPU, else WASM) and the policy is integrated by the shared
 * policy module (its WebGPU twin when there is a device, else the CPU reference). Noise, schedule,
 * tokenizer and request normalisation are those of the edge worker, so a seed gives the same image.
 */
/// <reference types="@webgpu/types" />
import {
  createTokenizer,
  latentToRgba,
  type Manifest,
  parseManifest,
  type Tokenizer,
} from '@piflow/models'
import {
  createCpuIntegrator,
  type LatentShape,
  type SegmentIntegrator,
  sample,
} from '@piflow/policy'
import {
  conditioningTensors,
  forwardInputs,
  initialLatents,
  latentShape,
  type NamedTensors,
  type NormalizedGeneration,
  normalizeGeneration,
  ProtocolError,
  policyOutputFrom,
  RequestValidationError,
  samplingFor,
} from '@piflow/protocol'
import { LocalInferenceError, ValidationError } from '../errors.ts'
import type { GeneratedImage, GenerateInput, Generation, Result } from '../types.ts'
import { type FileSpec, loadFile } from './download.ts'
import {
  loadOrt,
  type OpenedSession,
  type OrtModule,
  openSession,
  requestGpuDevice,
} from './ort.ts'
import { encodePng } from './png.ts'
import type { LocalGenerateOptions, LocalGenerator, LocalOptions, LocalProvider } from './types.ts'

export type * from './types.ts'

/** A model with its tokenizer, ready to open students. */
interface LoadedModel {
  id: string
  baseUrl: string
  manifest: Manifest
  tokenizer: Tokenizer
  /** one session per student file key */
  sessions: Map<string, Promise<OpenedSession>>
}

/**
 * Creates an in-browser generator. Nothing is downloaded until the first `load` or `generate`.
 * @example
 * const local = createLocalGenerator({ modelBaseUrl: '/models/', wasmPaths: '/ort/' })
 * const { data, backend } = await local.generate({ prompt: 'a red apple', nfe: 4, seed: 7 })
 */
export const createLocalGenerator = (options: LocalOptions = {}): LocalGenerator => {
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

  const fileOf = (
    model: { id: string; manifest: Manifest },
    key: string,
    root = baseUrl,
  ): FileSpec => {
    const file = model.manifest.files[key]
    if (!file) throw new LocalInferenceError('invalid_manifest', `Manifest has no file "${key}"`)
    return {
      key,
      url: new URL(`${model.id}/${file.path}`, root).href,
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
        return { id, baseUrl, manifest, tokenizer, sessions: new Map() }
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
  const prepare = async (model: LoadedModel, nfe: number, signal?: AbortSignal) => {
    const opened = await openStudent(model, nfe, signal)
    const integrator = await integratorFor()
    return { opened, integrator }
  }

  const generate = async (
    input: GenerateInput,
    opts: LocalGenerateOptions = {},
  ): Promise<Result<Generation>> => {
    const started = performance.now()
    const { signal } = opts
    const id = input.model ?? 'piflow-emoji'
    const model = await loadModel(id, signal)
    const { params: request, tokenIds } = normalize(input, model)
    const requestId = `local_${crypto.getRandomValues(new Uint32Array(2)).join('')}`
    opts.onStart?.({
      id: requestId,
      model: id,
      seed: request.seed,
      nfe: request.nfe,
      count: request.count,
    })
    const { opened, integrator } = await prepare(model, request.nfe, signal)
    const loadedAt = performance.now()
    const { manifest } = model
    const shape = latentShape(manifest, request.count)
    const perImage = shape.channels * shape.height * shape.width
    const xInit = initialLatents(manifest, request.seed, request.count)
    const conditioning = conditioningTensors(manifest, tokenIds!, request)
    const timings = { loadMs: loadedAt - started, forwardMs: 0, integrateMs: 0, encodeMs: 0 }
    let stepStarted = 0

    const ortModule = await ortOf()
    const x = await sample<Float32Array>({
      xInit,
      shape,
      ...samplingFor(manifest, request.nfe),
      integrator,
      ...(signal ? { signal } : {}),
      forward: async (xSrc, sigmaSrc) => {
        const forwardStarted = performance.now()
        const inputs = forwardInputs(shape, xSrc, sigmaSrc, conditioning)
        const outputs = await opened.session.run(ortFeeds(ortModule, inputs))
        timings.forwardMs += performance.now() - forwardStarted
        stepStarted = performance.now()
        return studentOutput(manifest, shape, outputs)
      },
      onStep: (info) => {
        timings.integrateMs += performance.now() - stepStarted
        opts.onProgress?.({ step: info.step + 1, nfe: info.nfe })
      },
    })

    const images: GeneratedImage[] = []
    for (let i = 0; i < request.count; i++) {
      signal?.throwIfAborted()
      const encodeStarted = performance.now()
      const rgba = latentToRgba(
        x.subarray(i * perImage, (i + 1) * perImage),
        { ...shape, batch: 1 },
        request.size,
        {
          valueRange: manifest.image.valueRange,
        },
      )
      const data = await encodePng(rgba, request.size, request.size)
      timings.encodeMs += performance.now() - encodeStarted
      images.push({
        index: i,
        seed: (request.seed + i) >>> 0,
        width: request.size,
        height: request.size,
        contentType: 'image/png',
        data,
      })
    }
    return {
      data: {
        id: requestId,
        status: 'succeeded',
        ...request,
        images,
        path: opened.provider,
        integration: integrator.name,
        cached: false,
        progress: { step: request.nfe, nfe: request.nfe },
        timings: { ...timings, totalMs: performance.now() - started },
        error: null,
      },
      requestId,
      backend: opened.provider,
      timings: { ...timings, totalMs: performance.now() - started },
    }
  }

  const ortOf = () => {
    if (!ort) throw new LocalInferenceError('runtime_missing', 'onnxruntime-web is not loaded')
    return ort
  }

  return {
    generate,
    load: async (id = 'piflow-emoji', opts = {}) => {
      const model = await loadModel(id, opts.signal)
      const { opened, integrator } = await prepare(
        model,
        model.manifest.sampling.defaultNfe,
        opts.signal,
      )
      return { model: id, provider: opened.provider, integrator: integrator.name }
    },
    dispose: async () => {
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
    },
  }
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

/** The request as the API normalises it (`@piflow/protocol`), with the API's ValidationError. */
const normalize = (input: GenerateInput, model: LoadedModel): NormalizedGeneration => {
  try {
    return normalizeGeneration(input, model)
  } catch (error) {
    if (!(error instanceof RequestValidationError)) throw error
    throw new ValidationError({
      status: 422,
      code: 'validation_failed',
      message: error.message,
      fieldErrors: [...error.fields],
    })
  }
}

/** The contract's named tensors as onnxruntime-web feeds. */
const ortFeeds = (ort: OrtModule, tensors: NamedTensors) => {
  const feeds: Record<string, InstanceType<OrtModule['Tensor']>> = {}
  for (const [name, tensor] of Object.entries(tensors)) {
    const type = tensor.dtype === 'I64' ? 'int64' : 'float32'
    feeds[name] = new ort.Tensor(type, tensor.data as Float32Array | BigInt64Array, tensor.shape)
  }
  return feeds
}

/** The student's outputs as the segment's policy output (`bad_output` when they do not fit). */
const studentOutput = (
  manifest: Manifest,
  shape: LatentShape,
  outputs: Record<string, { data: unknown }>,
) => {
  try {
    return policyOutputFrom(manifest, shape, outputs)
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error
    throw new LocalInferenceError('bad_output', `Student ${error.message}`, { cause: error })
  }
}
