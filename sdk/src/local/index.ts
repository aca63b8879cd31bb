/**
 * @module @piflow/sdk/local
 * In-browser generation: the model's manifest and ONNX student are downloaded (sha256-checked, cached),
 * the student runs on onnxruntime-web (WebGPU, else WASM) and the policy is integrated by the shared
 * policy module (its WebGPU twin when there is a device, else the CPU reference). Noise, schedule,
 * tokenizer, tensors and request normalisation are the generation contract the edge worker runs
 * (`@piflow/protocol`), so a seed gives the same image. Loading (loader.ts) is apart from a run (run.ts).
 */
import {
  type NormalizedGeneration,
  normalizeGeneration,
  RequestValidationError,
} from '@piflow/protocol'
import { ValidationError } from '../errors.ts'
import { asStream } from '../events.ts'
import type { GenerateInput, Generation, Result } from '../types.ts'
import { createModelLoader, type LoadedModel } from './loader.ts'
import { runLocal } from './run.ts'
import { localEvents } from './stream.ts'
import type { LocalGenerateOptions, LocalGenerator, LocalOptions } from './types.ts'

export type * from './types.ts'

/** The request as the API normalises it, with the API's ValidationError. */
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

/**
 * Creates an in-browser generator. Nothing is downloaded until the first `load` or `generate`.
 * @example
 * const local = createLocalGenerator({ modelBaseUrl: '/models/', wasmPaths: '/ort/' })
 * const { data, backend } = await local.generate({ prompt: 'a red apple', nfe: 4, seed: 7 })
 */
export const createLocalGenerator = (options: LocalOptions = {}): LocalGenerator => {
  const loader = createModelLoader(options)

  const generate = async (
    input: GenerateInput,
    opts: LocalGenerateOptions = {},
  ): Promise<Result<Generation>> => {
    const started = performance.now()
    const id = input.model ?? 'piflow-emoji'
    const model = await loader.loadModel(id, opts.signal)
    const { params, tokenIds } = normalize(input, model)
    const requestId = `local_${crypto.getRandomValues(new Uint32Array(2)).join('')}`
    opts.onStart?.({
      id: requestId,
      model: id,
      seed: params.seed,
      nfe: params.nfe,
      count: params.count,
    })
    const prepared = await loader.prepare(model, params.nfe, params.count, opts.signal)
    const request = {
      id: requestId,
      params,
      tokenIds: tokenIds!,
      started,
      loadedAt: performance.now(),
    }
    return runLocal(prepared, request, opts)
  }

  return {
    generate,
    stream: (input, opts = {}) => asStream(localEvents(generate, input, opts)),
    load: async (id = 'piflow-emoji', opts = {}) => {
      const model = await loader.loadModel(id, opts.signal)
      const { defaultNfe } = model.manifest.sampling
      const { opened, integrator, reason } = await loader.prepare(model, defaultNfe, 1, opts.signal)
      return {
        model: id,
        provider: opened.provider,
        integrator: integrator.name,
        ...(reason ? { reason } : {}),
      }
    },
    dispose: loader.dispose,
  }
}
