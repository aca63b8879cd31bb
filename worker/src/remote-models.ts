/**
 * @module remote-models
 * Models generated whole on a backend (the released π-Flow students on the PyTorch backend): what a
 * request may ask of one comes from the backend's own `/v1/models/:id` entry (PROTOCOL.md "Whole
 * generations"), memoised per isolate and fetched again after a miss.
 *
 * Why the backend's entry and not a description shipped with the worker: the backend loads the model
 * (its torch manifest: sizes, NFE options, guidance, prompt limits, maxCount) and refuses what it
 * cannot run, so its entry is the one source that cannot disagree with what will run; a copy at the
 * edge would have to be kept in step with every torch manifest and every operator's
 * `--max-batch-rows`. The worker parses it with the protocol's schema (generate-wire.ts) and validates
 * requests against it before anything is charged.
 */
import { buildSchedule } from '@piflow/policy'
import {
  type GenerateModel,
  generateModelSchema,
  generateRequestOptions,
  type RequestOptions,
} from '@piflow/protocol'
import { canonicalJson } from './cache.ts'
import { sha256Hex } from './crypto.ts'
import { type BackendConfig, backendsFor, type Settings } from './env.ts'
import { BackendError } from './errors.ts'

/** A model whose whole generation runs on a backend. */
export interface RemoteModel {
  kind: 'remote'
  id: string
  /** the backend's `/v1/models/:id` entry, as parsed */
  entry: GenerateModel
  /** what a request may ask, derived from `entry` */
  options: RequestOptions
  /** sha256 of the entry: cache keys change when the backend's model does (dtype, settings, …) */
  version: string
}

/** A memoised entry is trusted this long before it is fetched again. */
const MEMO_MS = 5 * 60_000
const LOOKUP_TIMEOUT_MS = 5_000

const memo = new Map<string, { at: number; model: Promise<RemoteModel | undefined> }>()

/** Whether a backend is configured for `id` by name: then its entry, not an asset manifest, says what it is. */
export function listedByBackend(settings: Settings, id: string): boolean {
  return settings.backends.some((b) => b.models?.includes(id))
}

/** `GET /v1/models/:id` of one backend: the parsed entry, or undefined when it serves no `generate` model `id`. */
async function entryFrom(
  backend: BackendConfig,
  id: string,
  secret: string,
): Promise<GenerateModel | undefined> {
  const response = await fetch(`${backend.url}/v1/models/${encodeURIComponent(id)}`, {
    headers: { 'X-Piflow-Backend-Secret': secret },
    signal: AbortSignal.timeout(LOOKUP_TIMEOUT_MS),
  })
  if (response.status === 404) {
    await response.body?.cancel()
    return undefined
  }
  if (!response.ok) throw new Error(`${backend.id} answered ${response.status}`)
  const json = (await response.json()) as { capabilities?: unknown }
  // A forward/step model listed on a backend is an ONNX model pinned there: not ours.
  if (!Array.isArray(json?.capabilities) || !json.capabilities.includes('generate'))
    return undefined
  const parsed = generateModelSchema.safeParse(json)
  if (!parsed.success || parsed.data.id !== id) {
    const reason = parsed.success ? `its id is ${parsed.data.id}` : parsed.error.message
    throw new BackendError(
      502,
      'backend_bad_output',
      `${backend.id} describes ${id} in a way the protocol does not allow: ${reason}`,
    )
  }
  return parsed.data
}

/** Asks the model's backends in turn; the first that answers decides. */
async function lookup(settings: Settings, id: string): Promise<RemoteModel | undefined> {
  let lastError: unknown
  for (const backend of backendsFor(settings.backends, id)) {
    let entry: GenerateModel | undefined
    try {
      entry = await entryFrom(backend, id, settings.backendSecret)
    } catch (error) {
      if (error instanceof BackendError) throw error
      lastError = error
      continue
    }
    if (!entry) return undefined
    return {
      kind: 'remote',
      id,
      entry,
      options: generateRequestOptions(entry),
      version: await sha256Hex(canonicalJson(entry)),
    }
  }
  throw new BackendError(
    503,
    'backends_unavailable',
    `No backend of model ${id} could describe it: ${(lastError as Error | undefined)?.message ?? 'none configured'}`,
    { retryAfter: 5, cause: lastError },
  )
}

/**
 * The remote model `id` as its backends describe it, or undefined when none serves it whole.
 * @throws {BackendError} 503 when no backend of it answers.
 */
export function remoteModel(settings: Settings, id: string): Promise<RemoteModel | undefined> {
  const hit = memo.get(id)
  if (hit && Date.now() - hit.at < MEMO_MS) return hit.model
  const model = lookup(settings, id)
  memo.set(id, { at: Date.now(), model })
  // Neither a failure nor a miss is kept: the next request asks again (a backend coming up, a
  // model added to it).
  model.then(
    (found) => found ?? memo.delete(id),
    () => memo.delete(id),
  )
  return model
}

/** Drops the memoised entry of `id` (a backend refused a generation of it: its model may have changed). */
export function forgetRemoteModel(id: string): void {
  memo.delete(id)
}

/** σ after each NFE of `nfe`, from the schedule the backend's entry declares (undefined without one). */
export function remoteSigmas(model: RemoteModel, nfe: number): number[] | undefined {
  const settings = model.entry.sampling?.[String(nfe)]
  if (!settings) return undefined
  const schedule = buildSchedule({
    nfe,
    shift: settings.shift,
    finalStepSizeScale: settings.finalStepSizeScale,
  })
  return schedule.steps.map((step) => step.sigmaDst)
}
