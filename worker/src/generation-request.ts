/**
 * @module generation-request
 * The body of `POST /v1/generations` made into the request a generation runs: the public schema (422
 * with every failing field; also what openapi.ts documents), the model (an unknown one is a field
 * error too), then the generation contract of `@piflow/protocol` (defaults, limits, the model's options,
 * the prompt tokenized once), plus what the worker adds for its cache.
 */
import {
  type NormalizedGeneration,
  normalizeGeneration,
  RequestValidationError,
} from '@piflow/protocol'
import type { Context } from 'hono'
import { defaultModel, type Settings } from './env.ts'
import { NotFoundError, ValidationError } from './errors.ts'
import type { GenerationPlan } from './generate.ts'
import type { AppEnv } from './hono-env.ts'
import { type ServedModel, servedModel } from './models.ts'
import type { NormalizedRequest } from './records.ts'
import { fieldErrors, type GenerationRequest, generationRequestSchema } from './schemas.ts'
import { refuseWebhookTarget } from './webhooks.ts'

/** A request ready to run. */
export interface GenerationRequestInfo {
  /** the body as the schema parsed it (what the Idempotency-Key fingerprints) */
  body: GenerationRequest
  model: ServedModel
  request: NormalizedRequest
  seeded: boolean
  /** the prompt's token ids, passed on to the conditioning tensors (null: encoded on the backend) */
  tokenIds: number[] | null
}

/** The model a body names; an unknown one is a 422 on `model`. */
async function modelOf(c: Context<AppEnv>, id: string): Promise<ServedModel> {
  try {
    return await servedModel(c.env, c.var.settings, id)
  } catch (error) {
    if (error instanceof NotFoundError && error.code === 'model_not_found') {
      throw new ValidationError([{ path: 'model', message: error.message }])
    }
    throw error
  }
}

/** The generation contract's normalisation, its field errors as the API's 422. */
function normalizeFor(body: GenerationRequest, model: ServedModel, maxCount: number | undefined) {
  try {
    // A remote model is checked against what its backend declares (remote-models.ts).
    return normalizeGeneration(body, model, { maxCount })
  } catch (error) {
    if (error instanceof RequestValidationError) throw new ValidationError([...error.fields])
    throw error
  }
}

/**
 * sha256 of the student file serving `nfe` (of the backend's model entry for a remote model), so a
 * model update never hits a stale cache entry.
 */
function modelVersion(model: ServedModel, nfe: number): string {
  if (model.kind === 'remote') return model.version
  const studentKey = model.manifest.sampling.perNfe[String(nfe)]?.onnx
  return (studentKey && model.manifest.files[studentKey]?.sha256) || 'unknown'
}

/** A webhook target refused by the SSRF rules (webhooks.ts) is a 422 `webhook_url_refused`. */
function checkWebhook(body: GenerationRequest, local: boolean): void {
  if (body.webhook === undefined) {
    if (body.webhookEvents !== undefined) {
      throw new ValidationError([{ path: 'webhookEvents', message: 'needs a webhook' }])
    }
    return
  }
  const refused = refuseWebhookTarget(body.webhook, local)
  if (refused)
    throw new ValidationError([{ path: 'webhook', message: refused }], 'webhook_url_refused')
}

/** Validates and normalises `c.var.jsonBody` for the calling key; no `model` means the default one. */
export async function readGenerationRequest(c: Context<AppEnv>): Promise<GenerationRequestInfo> {
  const parsed = generationRequestSchema.safeParse(c.var.jsonBody)
  if (!parsed.success) throw new ValidationError(fieldErrors(parsed.error))
  const body: GenerationRequest = {
    ...parsed.data,
    model: parsed.data.model ?? defaultModel(c.var.settings),
  }
  checkWebhook(body, c.var.settings.local)
  const model = await modelOf(c, body.model)
  const normalized: NormalizedGeneration = normalizeFor(body, model, c.var.principal.maxCount)
  const { params, seeded } = normalized
  return {
    body,
    model,
    request: { ...params, modelVersion: modelVersion(model, params.nfe), format: body.format },
    seeded,
    // every manifest model the worker serves has its tokenizer (models.ts)
    tokenIds: normalized.tokenIds,
  }
}

/**
 * Where the policy rollout runs: the configured place when the manifest allows it, else its choice;
 * on the backend for a model generated whole there.
 */
export function integrationFor(model: ServedModel, settings: Settings): 'edge' | 'backend' {
  if (model.kind === 'remote') return 'backend'
  const allowed: readonly string[] = model.manifest.integration
  if (settings.integration === 'edge' && allowed.includes('edge')) return 'edge'
  if (settings.integration === 'backend' && allowed.includes('backend')) return 'backend'
  return allowed.includes('edge') ? 'edge' : 'backend'
}

/** The plan a job runs for a request: the sampler here (manifest models) or the whole generation remote. */
export function generationPlan(
  info: GenerationRequestInfo,
  fields: { generationId: string; integration: 'edge' | 'backend'; preview: boolean },
): GenerationPlan {
  const { model, request } = info
  if (model.kind === 'remote') {
    return { model, request, generationId: fields.generationId, preview: fields.preview }
  }
  const tokenIds = info.tokenIds ?? [] // a manifest model always has its tokenizer here
  return { model, request, tokenIds, integration: fields.integration, preview: fields.preview }
}
