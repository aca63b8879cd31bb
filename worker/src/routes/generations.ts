/**
 * @module routes/generations
 * `POST /v1/generations` (JSON or SSE) and `GET /v1/generations/:id`.
 *
 * Order of checks on POST: auth → body (415/413/400) → schema (422) → model limits (422) → quota (429)
 * → Idempotency-Key (replay/409/422) → cache (hit: no backend) → run. Validation failures cost no quota.
 */

import { TokenizerError } from '@piflow/models'
import type { Context } from 'hono'
import { Hono } from 'hono'
import { streamSSE } from 'hono/streaming'
import { setMetric } from 'hono/timing'
import { BackendRouter } from '../backends.ts'
import { type CachedResult, cacheKey, canonicalJson, lookupResult } from '../cache.ts'
import { randomToken, sha256Hex } from '../crypto.ts'
import type { Settings } from '../env.ts'
import type { FieldError } from '../errors.ts'
import {
  ApiError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  ValidationError,
} from '../errors.ts'
import { imageSeq, parseLastEventId, progressSeq, terminalSeq } from '../events.ts'
import type { AppEnv } from '../hono-env.ts'
import { GenerationJob } from '../jobs.ts'
import { auth, watchRevocation } from '../middleware/auth.ts'
import { readJsonBody } from '../middleware/json-body.ts'
import { consumeQuota, type QuotaRefund } from '../middleware/rate-limit.ts'
import { getModel, type LoadedModel } from '../models.ts'
import { publicOrigin } from '../origin.ts'
import type { GenerationRecord, NormalizedRequest } from '../records.ts'
import { type RenderOptions, renderGeneration, renderImage } from '../render.ts'
import { KEY_REVOKED } from '../revocations.ts'
import {
  fieldErrors,
  type GenerationRequest,
  generationRequestSchema,
  MAX_BODY_BYTES,
  MAX_COUNT,
  MAX_PROMPT_CHARS,
} from '../schemas.ts'
import { errorEventData, idEventData, streamRecord, unbuffered, wantsSse } from '../sse.ts'

export const generations = new Hono<AppEnv>()

/**
 * The prompt in its one spelling (NFC, trimmed, single spaces, so cache keys do not split on
 * whitespace), with its limits checked after normalising: NFC alone can make a prompt that was within
 * the limit as sent three times longer. Whatever the tokenizer refuses is the caller's 422 too.
 */
function normalizePrompt(raw: string, model: LoadedModel, errors: FieldError[]): string {
  const prompt = raw.normalize('NFC').trim().replace(/\s+/g, ' ')
  const { maxLength } = model.manifest.text
  if (prompt.length > MAX_PROMPT_CHARS) {
    errors.push({
      path: 'prompt',
      message: `is ${prompt.length} characters once normalised (Unicode NFC); at most ${MAX_PROMPT_CHARS}`,
    })
    return prompt
  }
  let tokens: number
  try {
    tokens = model.tokenize(prompt).length
  } catch (error) {
    if (!(error instanceof TokenizerError)) throw error
    errors.push({ path: 'prompt', message: error.message })
    return prompt
  }
  if (tokens === 0) {
    // The model would see only padding: an unconditional image, not what was asked for.
    errors.push({
      path: 'prompt',
      message:
        'has no word this model reads (runs of a-z and 0-9); emoji and punctuation alone are ignored',
    })
  }
  if (tokens > maxLength) {
    errors.push({
      path: 'prompt',
      message: `is ${tokens} tokens; this model reads at most ${maxLength}`,
    })
  }
  return prompt
}

/** Model-specific checks the static schema cannot express (422 with every failing field). */
function normalize(
  body: GenerationRequest,
  model: LoadedModel,
  maxCount: number,
): { request: NormalizedRequest; seeded: boolean } {
  const { manifest } = model
  const errors: FieldError[] = []
  const nfe = body.nfe ?? manifest.sampling.defaultNfe
  if (!manifest.sampling.nfeOptions.includes(nfe)) {
    errors.push({
      path: 'nfe',
      message: `must be one of ${manifest.sampling.nfeOptions.join(', ')}`,
    })
  }
  const sizes = manifest.image.outputSizes
  const size =
    body.size ?? (sizes.includes(manifest.image.width) ? manifest.image.width : sizes[0]!)
  if (!sizes.includes(size))
    errors.push({ path: 'size', message: `must be one of ${sizes.join(', ')}` })
  const guidance = body.guidance ?? manifest.guidance.default
  if (guidance < manifest.guidance.min || guidance > manifest.guidance.max) {
    errors.push({
      path: 'guidance',
      message: `must be between ${manifest.guidance.min} and ${manifest.guidance.max}`,
    })
  }
  if (body.count > maxCount) errors.push({ path: 'count', message: `must be at most ${maxCount}` })
  const prompt = normalizePrompt(body.prompt, model, errors)
  if (errors.length > 0) throw new ValidationError(errors)
  const studentKey = manifest.sampling.perNfe[String(nfe)]?.onnx
  const seeded = body.seed !== undefined
  return {
    seeded,
    request: {
      model: model.id,
      modelVersion: (studentKey && manifest.files[studentKey]?.sha256) || 'unknown',
      prompt,
      nfe,
      seed: body.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]!,
      size,
      guidance,
      count: body.count,
      format: body.format,
    },
  }
}

function integrationFor(model: LoadedModel, settings: Settings): 'edge' | 'backend' {
  const allowed: readonly string[] = model.manifest.integration
  if (settings.integration === 'edge' && allowed.includes('edge')) return 'edge'
  if (settings.integration === 'backend' && allowed.includes('backend')) return 'backend'
  return allowed.includes('edge') ? 'edge' : 'backend'
}

function idempotencyKeyOf(c: Context<AppEnv>): string | undefined {
  const raw = c.req.header('Idempotency-Key')
  if (raw === undefined) return undefined
  // RFC 8941 sf-string form ("…") and a bare token are both accepted.
  const key = /^"(.*)"$/.exec(raw)?.[1] ?? raw
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw new BadRequestError(
      'invalid_idempotency_key',
      'Idempotency-Key must be 1-255 printable ASCII characters',
    )
  }
  return key
}

function renderOptions(c: Context<AppEnv>, inline: boolean): RenderOptions {
  return {
    origin: publicOrigin(c),
    signingSecret: c.var.settings.signingSecret,
    bucket: c.env.IMAGES,
    inline,
  }
}

const ledgerOf = (c: Context<AppEnv>) =>
  c.env.LEDGER.get(c.env.LEDGER.idFromName(c.var.principal.keyId))

/** A finished record as a response: JSON (200 or the failure's status) or a short SSE replay. */
async function respondWithRecord(
  c: Context<AppEnv>,
  ledger: ReturnType<typeof ledgerOf>,
  record: GenerationRecord,
  options: RenderOptions,
  pngs?: ReadonlyMap<number, Uint8Array>,
): Promise<Response> {
  if (wantsSse(c)) return streamRecord(c, ledger, record, -1, options)
  if (record.error) {
    if (record.error.retryAfter !== undefined)
      c.header('Retry-After', String(record.error.retryAfter))
    return c.json(
      {
        error: { code: record.error.code, message: record.error.message },
        requestId: c.var.requestId,
        generationId: record.id,
      },
      record.error.status as 500,
    )
  }
  return c.json(await renderGeneration(record, options, pngs))
}

/**
 * Awaits `work`, recording its duration as a Server-Timing metric. A metric that finishes after the
 * response went out (an early 409/429 while a lookup still runs) is dropped silently, where hono's
 * startTime/endTime would warn about a timer its middleware already closed.
 */
async function timed<T>(c: Context<AppEnv>, metric: string, work: Promise<T>): Promise<T> {
  const started = performance.now()
  try {
    return await work
  } finally {
    setMetric(c, metric, performance.now() - started)
  }
}

/** The `cached: true` record of a cache hit. */
function cacheHitRecord(base: GenerationRecord, hit: CachedResult): GenerationRecord {
  const nfe = base.request.nfe
  return {
    ...base,
    status: 'succeeded',
    cached: true,
    progress: { step: nfe, nfe },
    images: hit.images,
    integration: hit.integration,
    timings: { ...base.timings, totalMs: Date.now() - Date.parse(base.createdAt) },
    completedAt: new Date().toISOString(),
  }
}

generations.post('/', auth('generations:write'), async (c) => {
  const started = Date.now()
  const raw = await readJsonBody(c, MAX_BODY_BYTES)
  const parsed = generationRequestSchema.safeParse(raw)
  if (!parsed.success) throw new ValidationError(fieldErrors(parsed.error))
  const body = parsed.data
  const { settings, principal } = c.var
  const model = await getModel(c.env, settings.models, body.model).catch((error) => {
    if (error instanceof NotFoundError && error.code === 'model_not_found') {
      throw new ValidationError([{ path: 'model', message: error.message }])
    }
    throw error
  })
  const { request, seeded } = normalize(
    body,
    model,
    Math.min(principal.maxCount ?? MAX_COUNT, MAX_COUNT),
  )
  const idempotencyKey = idempotencyKeyOf(c)
  const hash = seeded ? await cacheKey(principal.keyId, request) : undefined
  // The cache lookup runs while idempotency is decided; its answer is used only once idempotency and
  // quota have passed.
  const pendingHit = hash
    ? timed(
        c,
        'cache',
        lookupResult(hash, c.env.IMAGES, (p) => c.executionCtx.waitUntil(p)),
      )
    : Promise.resolve(undefined)
  pendingHit.catch(() => {}) // awaited below; a replay returns before that

  const ledger = ledgerOf(c)
  const options = renderOptions(c, body.response === 'base64')
  const id = `gen_${randomToken(16)}`
  // Idempotency before quota: a replay does no work, so a client retrying in an exhausted window
  // still gets its stored result instead of a 429.
  if (idempotencyKey !== undefined) {
    const fingerprint = await sha256Hex(canonicalJson(body))
    const decision = await ledger.beginIdempotent(idempotencyKey, fingerprint, id)
    if (decision.kind === 'running') {
      throw new ConflictError(
        'idempotency_in_progress',
        `A request with this Idempotency-Key is still running (${decision.generationId})`,
        decision.retryAfter,
      )
    }
    if (decision.kind === 'mismatch') {
      throw new ApiError(
        422,
        'idempotency_key_reused',
        'This Idempotency-Key was used with a different request body',
      )
    }
    if (decision.kind === 'replay') {
      const record = await ledger.getGeneration(decision.generationId)
      if (!record) throw new NotFoundError('The replayed generation has expired')
      c.header('Idempotent-Replayed', 'true')
      return respondWithRecord(c, ledger, record, options)
    }
  }

  const integration = integrationFor(model, settings)
  const base: GenerationRecord = {
    id,
    requestId: c.var.requestId,
    status: 'running',
    request,
    seeded,
    cached: false,
    progress: { step: 0, nfe: request.nfe },
    images: [],
    integration,
    backends: [],
    timings: { totalMs: 0, forwardMs: 0, integrateMs: 0, encodeMs: 0 },
    createdAt: new Date(started).toISOString(),
    completedAt: null,
    error: null,
  }
  // A cache hit's record is written while the quota is decided, so a hit costs one Durable Object
  // round trip instead of two in a row. If the quota then refuses, the record (whose id nobody has
  // seen) is deleted again.
  const hitStored = pendingHit.then(async (hit) => {
    if (!hit) return undefined
    const record = cacheHitRecord(base, hit)
    await timed(c, 'ledger', ledger.putGeneration(record))
    return record
  })
  hitStored.catch(() => {}) // awaited below

  let hitRecord: GenerationRecord | undefined
  let refundQuota: QuotaRefund
  try {
    ;[refundQuota, hitRecord] = await Promise.all([
      timed(c, 'quota', consumeQuota(c, request.count)),
      hitStored,
    ])
  } catch (error) {
    c.executionCtx.waitUntil(
      hitStored.then((record) => record && ledger.deleteGeneration(record.id)).catch(() => {}),
    )
    // The key was reserved above; a refused or failed request must not leave it "running".
    if (idempotencyKey !== undefined) await ledger.finishIdempotent(idempotencyKey, 'release')
    throw error
  }

  if (hitRecord) {
    // Stored before answering, so a GET right after the response finds it.
    const [response] = await Promise.all([
      respondWithRecord(c, ledger, hitRecord, options),
      idempotencyKey === undefined ? undefined : ledger.finishIdempotent(idempotencyKey, 'keep'),
    ])
    return response
  }

  let job: GenerationJob
  try {
    // The job stores `base` itself, without holding up its first backend call.
    job = new GenerationJob({
      plan: { model, request, integration, preview: body.preview && wantsSse(c) },
      record: base,
      router: new BackendRouter(
        settings.backends,
        settings.backendSecret,
        settings.backendTimeoutMs,
      ),
      bucket: c.env.IMAGES,
      ledger,
      ...(hash ? { cacheHash: hash } : {}),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      refundQuota,
      recordProgress: wantsSse(c),
    })
  } catch (error) {
    // Until a job owns the Idempotency-Key, a failure must release it rather than leave it running.
    if (idempotencyKey !== undefined) await ledger.finishIdempotent(idempotencyKey, 'release')
    throw error
  }
  // The job outlives the response: a client that drops the stream can still GET the result.
  c.executionCtx.waitUntil(job.settled)

  if (!wantsSse(c)) {
    const record = await timed(c, 'generate', job.done)
    // `total` − `backend` is what the worker added; `store` is the part spent making it durable
    // (PNGs in R2, the final record in the Ledger).
    setMetric(c, 'backend', record.timings.forwardMs)
    setMetric(c, 'store', job.storeMs)
    return respondWithRecord(c, ledger, record, options, job.pngs)
  }

  return unbuffered(
    c,
    streamSSE(c, async (stream) => {
      let chain: Promise<unknown> = Promise.resolve()
      // Writes are serialised through one chain; after a disconnect they become no-ops while the job
      // itself runs on. Ids are structural (events.ts), so a resume continues where this stopped.
      const enqueue = (task: () => Promise<unknown>) => {
        chain = chain.then(task).catch(() => undefined)
      }
      const write = async (event: string, seq: number, data: unknown) => {
        if (!stream.aborted) {
          await stream.writeSSE({ event, data: JSON.stringify(data), id: String(seq) })
        }
      }
      // Once the id is out, a client may GET it: the running record must be stored by then.
      enqueue(async () => {
        await job.stored.catch(() => undefined)
        await write('id', 0, idEventData(base))
      })
      const keepalive = setInterval(() => {
        enqueue(async () => {
          if (!stream.aborted) await stream.write(': keepalive\n\n')
        })
      }, settings.sseKeepaliveMs)
      const unsubscribe = job.subscribe((event) => {
        if (event.type === 'progress') {
          enqueue(() => write('progress', progressSeq(event.progress.step), event.progress))
        } else {
          enqueue(async () =>
            write(
              'image',
              imageSeq(request, event.image.index),
              await renderImage(event.image, options, event.png),
            ),
          )
        }
      })
      // A key revoked mid-stream ends the stream (the job runs on; its result stays in the Ledger).
      const revocation = watchRevocation(c, settings.sseKeepaliveMs)
      try {
        const record = await Promise.race([job.done, revocation.revoked.then(() => undefined)])
        await chain
        const end = terminalSeq(request)
        if (!record) {
          await write('error', end, errorEventData(id, KEY_REVOKED, c.var.requestId))
        } else if (record.error) {
          await write('error', end, errorEventData(id, record.error, c.var.requestId))
        } else {
          await write('done', end, await renderGeneration(record, options, job.pngs))
        }
      } finally {
        revocation.stop()
        clearInterval(keepalive)
        unsubscribe()
      }
    }),
  )
})

/**
 * JSON: the generation's current state. SSE (`Accept: text/event-stream`): its events after
 * `Last-Event-ID` (or `?lastEventId=`; all of them without one), then the live ones until `done` or
 * `error`; 204 when the client already has the last event (EventSource then stops reconnecting).
 */
generations.get('/:id', auth('generations:read'), async (c) => {
  const id = c.req.param('id')
  const ledger = ledgerOf(c)
  const record = /^gen_[A-Za-z0-9_-]{1,64}$/.test(id) ? await ledger.getGeneration(id) : undefined
  if (!record)
    throw new NotFoundError(`No generation "${id}" for this API key`, 'generation_not_found')
  const options = renderOptions(c, c.req.query('response') === 'base64')
  if (wantsSse(c)) {
    const after = parseLastEventId(
      c.req.header('Last-Event-ID') ?? c.req.query('lastEventId'),
      record.request,
    )
    if (after >= terminalSeq(record.request)) return c.body(null, 204)
    return streamRecord(c, ledger, record, after, options)
  }
  return c.json(await renderGeneration(record, options))
})
