/**
 * @module models
 * The models this worker serves: manifests (and tokenizers) read from the static assets built from
 * `models/` and parsed with the shared `@piflow/models` parser, memoised per isolate. Model files are
 * immutable (the manifest pins their sha256), so the asset CDN serves them; see routes/models.ts.
 */
import { createTokenizer, type Manifest, parseManifest, type Tokenizer } from '@piflow/models'
import { samplingFor } from '@piflow/protocol'
import type { Env, Settings } from './env.ts'
import { ApiError, NotFoundError } from './errors.ts'
import { listedByBackend, type RemoteModel, remoteModel, remoteSigmas } from './remote-models.ts'

/** A model ready to generate with: an ONNX student whose sampler runs here (manifest from assets). */
export interface LoadedModel {
  kind: 'manifest'
  id: string
  manifest: Manifest
  tokenizer: Tokenizer
}

/** Any model the worker serves: a manifest model, or one generated whole on its backend. */
export type ServedModel = LoadedModel | RemoteModel

const loaded = new Map<string, Promise<LoadedModel>>()

async function fetchAsset(env: Env, path: string): Promise<Response> {
  // The host is irrelevant to the assets binding; only the path selects the file.
  const response = await env.ASSETS.fetch(new Request(`https://assets.invalid/${path}`))
  if (!response.ok) {
    await response.body?.cancel()
    throw new NotFoundError(`Model asset ${path} is missing`, 'model_asset_missing')
  }
  return response
}

async function load(env: Env, id: string): Promise<LoadedModel> {
  const manifestJson = await (await fetchAsset(env, `${id}/manifest.json`)).json()
  let manifest: Manifest
  try {
    manifest = parseManifest(manifestJson)
  } catch (error) {
    throw new ApiError(500, 'model_manifest_invalid', `Manifest of ${id} is invalid`, {
      cause: error,
    })
  }
  const tokenizerFile = manifest.files[manifest.text.tokenizer]
  if (!tokenizerFile) {
    throw new ApiError(500, 'model_manifest_invalid', `Manifest of ${id} has no tokenizer file`)
  }
  const tokenizerJson = await (await fetchAsset(env, `${id}/${tokenizerFile.path}`)).json()
  return { kind: 'manifest', id, manifest, tokenizer: createTokenizer(tokenizerJson) }
}

/**
 * The model `id` if this worker serves it (`PIFLOW_MODELS`); throws NotFoundError otherwise. A model
 * a backend names in its `models` is asked of that backend first (remote-models.ts): served whole
 * there when its entry has the `generate` capability, else it is a manifest model pinned to it.
 */
export async function servedModel(env: Env, settings: Settings, id: string): Promise<ServedModel> {
  if (listedByBackend(settings, id) && settings.models.includes(id)) {
    const remote = await remoteModel(settings, id)
    if (remote) return remote
  }
  return getModel(env, settings.models, id)
}

/** The manifest model `id` (from the static assets) if this worker serves it; throws NotFoundError otherwise. */
export async function getModel(
  env: Env,
  served: readonly string[],
  id: string,
): Promise<LoadedModel> {
  if (!served.includes(id)) throw new NotFoundError(`Unknown model "${id}"`, 'model_not_found')
  let model = loaded.get(id)
  if (!model) {
    model = load(env, id)
    loaded.set(id, model)
    // A failed load (e.g. assets not built yet) must not be cached forever.
    model.catch(() => loaded.delete(id))
  }
  return model
}

/** σ at the end of each NFE step of `nfe` for `model` (undefined for a backend that declares no schedule). */
export function stepSigmas(model: ServedModel, nfe: number): number[] | undefined {
  if (model.kind === 'remote') return remoteSigmas(model, nfe)
  return samplingFor(model.manifest, nfe).schedule.steps.map((step) => step.sigmaDst)
}
