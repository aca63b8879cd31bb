/**
 * @module routes/generations
 * `POST /v1/generations` (JSON or SSE), `GET /v1/generations/:id` and
 * `POST /v1/generations/:id/cancel`.
 *
 * With `Prefer: respond-async` the POST answers 202 `{ id, status, urls }` once the generation's record
 * is stored, and the generation runs on (Location, Preference-Applied: respond-async).
 *
 * Order of checks on POST: auth → body (415/413/400) → schema (422) → model limits (422) → quota (429)
 * → Idempotency-Key (replay/409/422) → cache (hit: no backend) → run. Validation failures cost no quota.
 */

import type { Context } from 'hono'
import { Hono } from 'hono'
import { setMetric } from 'hono/timing'
import { BackendRouter } from '../backends.ts'
import { type CachedResult, cachedSteps, cacheHitRecord, cacheKey, lookupResult } from '../cache.ts'
import { randomToken } from '../crypto.ts'
import { backendsFor } from '../env.ts'
import { ApiError, NotFoundError } from '../errors.ts'
import { parseLastEventId, terminalSeq } from '../events.ts'
import { generationPlan, integrationFor, readGenerationRequest } from '../generation-request.ts'
import type { AppEnv } from '../hono-env.ts'
import { claimIdempotencyKey, idempotencyKeyOf } from '../idempotency.ts'
import { type GenerationJob, startGeneration } from '../jobs.ts'
import { auth } from '../middleware/auth.ts'
import { jsonBody } from '../middleware/json-body.ts'
import { stepSigmas } from '../models.ts'
import { publicOrigin } from '../origin.ts'
import { enterQueue } from '../queue.ts'
import { consumeQuota, type QuotaRefund } from '../quota.ts'
import { type GenerationRecord, type ProgressInfo, runningRecord } from '../records.ts'
import { type RenderOptions, renderGeneration } from '../render.ts'
import { type GenerationRequest, MAX_BODY_BYTES } from '../schemas.ts'
import { streamJob, streamRecord, wantsSse } from '../sse.ts'
import { sendWebhook, type WebhookTarget } from '../webhooks.ts'

type Ledger = ReturnType<typeof ledgerOf>

const ledgerOf = (c: Context<AppEnv>) =>
  c.env.LEDGER.get(c.env.LEDGER.idFromName(c.var.principal.keyId))

function renderOptions(c: Context<AppEnv>, inline: boolean): RenderOptions {
  return {
    origin: publicOrigin(c),
    signingSecret: c.var.settings.signingSecret,
    bucket: c.env.IMAGES,
    inline,
  }
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

/** A finished record as a response: JSON (200 or the failure's status) or a short SSE replay. */
async function respondWithRecord(
  c: Context<AppEnv>,
  ledger: Ledger,
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

/** Where the request's webhooks go (its key's outbox), or undefined without a `webhook`. */
function webhookTargetOf(c: Context<AppEnv>, body: GenerationRequest): WebhookTarget | undefined {
  if (body.webhook === undefined) return undefined
  const { keyId, keyHash } = c.var.principal
  return {
    url: body.webhook,
    events: body.webhookEvents ?? ['completed'],
    keyId,
    keyHash,
    outbox: c.env.WEBHOOKS.get(c.env.WEBHOOKS.idFromName(keyId)),
  }
}

/** True when the request carries `Prefer: respond-async` (RFC 7240; other preferences are ignored). */
const prefersAsync = (c: Context<AppEnv>) =>
  (c.req.header('Prefer') ?? '')
    .split(',')
    .some((preference) => preference.split(';')[0]!.trim().toLowerCase() === 'respond-async')

/**
 * The 202 of `Prefer: respond-async`: the generation's id, status and where to follow it (`stream` is
 * the same URL read with `Accept: text/event-stream`, as EventSource does), with `Location`.
 */
function acceptedResponse(c: Context<AppEnv>, record: GenerationRecord): Response {
  const get = `${publicOrigin(c)}/v1/generations/${record.id}`
  c.header('Location', get)
  c.header('Preference-Applied', 'respond-async')
  return c.json(
    { id: record.id, status: record.status, urls: { get, stream: get, cancel: `${get}/cancel` } },
    202,
  )
}

/** The stored generation an Idempotency-Key replays. */
async function replay(
  c: Context<AppEnv>,
  ledger: Ledger,
  generationId: string,
  options: RenderOptions,
): Promise<Response> {
  const record = await ledger.getGeneration(generationId)
  if (!record) throw new NotFoundError('The replayed generation has expired')
  c.header('Idempotent-Replayed', 'true')
  if (prefersAsync(c)) return acceptedResponse(c, record)
  return respondWithRecord(c, ledger, record, options)
}

/**
 * Takes the request's quota and, meanwhile, stores the record of a cache hit (one Durable Object round
 * trip instead of two in a row). Returns that record (undefined when the request must run) and the
 * quota's refund, for a generation that then fails for backend reasons. If the
 * quota refuses, the hit's record (whose id nobody has seen) is deleted again and the reserved
 * Idempotency-Key released, so a refused request leaves nothing "running".
 */
async function admit(
  c: Context<AppEnv>,
  ledger: Ledger,
  running: GenerationRecord,
  pendingHit: Promise<(CachedResult & { steps: ProgressInfo[] }) | undefined>,
  idempotencyKey: string | undefined,
): Promise<{ hit: GenerationRecord | undefined; refundQuota: QuotaRefund }> {
  const hitStored = pendingHit.then(async (hit) => {
    if (!hit) return undefined
    const record = cacheHitRecord(running, hit, hit.steps)
    await timed(c, 'ledger', ledger.putGeneration(record))
    return record
  })
  hitStored.catch(() => {}) // awaited below
  try {
    const [refundQuota, hit] = await Promise.all([
      timed(c, 'quota', consumeQuota(c, running.request.count)),
      hitStored,
    ])
    return { hit, refundQuota }
  } catch (error) {
    c.executionCtx.waitUntil(
      hitStored.then((record) => record && ledger.deleteGeneration(record.id)).catch(() => {}),
    )
    if (idempotencyKey !== undefined) await ledger.finishIdempotent(idempotencyKey, 'release')
    throw error
  }
}

/** The JSON answer of a generation this request runs: once it is done and stored. */
async function respondWhenDone(
  c: Context<AppEnv>,
  ledger: Ledger,
  job: GenerationJob,
  options: RenderOptions,
): Promise<Response> {
  const record = await timed(c, 'generate', job.done)
  // `total` − `backend` is what the worker added; `store` is the part spent making it durable
  // (PNGs in R2, the final record in the Ledger).
  setMetric(c, 'backend', record.timings.forwardMs)
  setMetric(c, 'store', job.storeMs)
  return respondWithRecord(c, ledger, record, options, job.pngs)
}

/** `POST /v1/generations`: replays, cache hits and new generations, answered as JSON or SSE. */
async function createGeneration(c: Context<AppEnv>): Promise<Response> {
  const started = Date.now()
  const info = await readGenerationRequest(c)
  const { body, model, request, seeded } = info
  const { settings, principal } = c.var
  const idempotencyKey = idempotencyKeyOf(c.req.header('Idempotency-Key'))
  const hash = seeded ? await cacheKey(principal.keyId, request) : undefined
  // The cache lookup runs while idempotency is decided; its answer is used only once idempotency and
  // quota have passed.
  const waitUntil = (work: Promise<unknown>) => c.executionCtx.waitUntil(work)
  const pendingHit = hash
    ? timed(c, 'cache', lookupResult(hash, c.env.IMAGES, waitUntil)).then(
        (hit) => hit && { ...hit, steps: cachedSteps(request.nfe, stepSigmas(model, request.nfe)) },
      )
    : Promise.resolve(undefined)
  pendingHit.catch(() => {}) // awaited in admit(); a replay returns before that

  const ledger = ledgerOf(c)
  const options = renderOptions(c, body.response === 'base64')
  const id = `gen_${randomToken(16)}`
  // Idempotency before quota: a replay does no work, so a client retrying in an exhausted window
  // still gets its stored result instead of a 429.
  if (idempotencyKey !== undefined) {
    const replayed = await claimIdempotencyKey(ledger, idempotencyKey, body, id)
    if (replayed !== undefined) return replay(c, ledger, replayed, options)
  }

  const integration = integrationFor(model, settings)
  const running = runningRecord({
    id,
    requestId: c.var.requestId,
    request,
    seeded,
    integration,
    createdAt: started,
  })
  // An unseeded request can never be a cache hit: its slot is taken while the quota is (one round
  // trip saved), and given back if the quota refuses. A seeded one asks only once it missed the cache.
  const earlySlot = hash === undefined ? enterQueue(c, model.id, id) : undefined
  earlySlot?.catch(() => {}) // awaited below
  const { hit, refundQuota } = await admit(c, ledger, running, pendingHit, idempotencyKey).catch(
    (error: unknown) => {
      c.executionCtx.waitUntil(
        (earlySlot ?? Promise.resolve(undefined))
          .then((slot) => slot?.slots.release(id))
          .catch(() => {}),
      )
      throw error
    },
  )
  if (hit) {
    const webhook = webhookTargetOf(c, body)
    if (webhook) {
      const sent = renderGeneration(hit, renderOptions(c, false)).then((data) =>
        sendWebhook(webhook, hit.id, 'completed', data),
      )
      c.executionCtx.waitUntil(
        sent.catch((error) => console.error('webhook of a cache hit', error)),
      )
    }
    // Stored before answering, so a GET right after the response finds it.
    const [response] = await Promise.all([
      prefersAsync(c) ? acceptedResponse(c, hit) : respondWithRecord(c, ledger, hit, options),
      idempotencyKey === undefined ? undefined : ledger.finishIdempotent(idempotencyKey, 'keep'),
    ])
    return response
  }

  // A slot on the model, or a place in its queue; shed (503 queue_full) gives back what admit() took.
  const admission = await (earlySlot ?? enterQueue(c, model.id, id)).catch(
    async (error: unknown) => {
      await Promise.all([
        refundQuota(),
        idempotencyKey === undefined
          ? undefined
          : ledger.finishIdempotent(idempotencyKey, 'release'),
      ])
      throw error
    },
  )
  const record: GenerationRecord =
    admission?.position === undefined
      ? running
      : { ...running, status: 'queued', queuePosition: admission.position }
  const webhook = webhookTargetOf(c, body)
  const sse = wantsSse(c)
  const answerAtOnce = prefersAsync(c)
  // Progress (and previews) are recorded for whoever follows the generation: its own stream, or GET
  // streams after a 202.
  const followed = sse || answerAtOnce
  const job = await startGeneration(
    {
      plan: generationPlan(info, {
        generationId: id,
        integration,
        preview: body.preview && followed,
      }),
      record,
      router: new BackendRouter(
        backendsFor(settings.backends, model.id),
        settings.backendSecret,
        settings.backendTimeoutMs,
        { requestId: id },
      ),
      bucket: c.env.IMAGES,
      ledger,
      ...(hash ? { cacheHash: hash } : {}),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      refundQuota,
      recordProgress: followed,
      ...(admission ? { admission } : {}),
      ...(webhook
        ? {
            webhook: {
              target: webhook,
              render: (r) => renderGeneration(r, renderOptions(c, false)),
            },
          }
        : {}),
    },
    waitUntil,
  )
  if (answerAtOnce) {
    // The job runs on under waitUntil; once its record is stored, a GET finds it.
    await job.stored
    return acceptedResponse(c, record)
  }
  return sse ? streamJob(c, job, record, options) : respondWhenDone(c, ledger, job, options)
}

/**
 * `GET /v1/generations/:id`. JSON: the generation's current state. SSE (`Accept: text/event-stream`):
 * its events after `Last-Event-ID` (or `?lastEventId=`; all of them without one), then the live ones
 * until `done` or `error`; 204 when the client already has the last event (EventSource then stops
 * reconnecting).
 */
const GENERATION_ID = /^gen_[A-Za-z0-9_-]{1,64}$/
const generationNotFound = (id: string) =>
  new NotFoundError(`No generation "${id}" for this API key`, 'generation_not_found')

async function getGeneration(c: Context<AppEnv>): Promise<Response> {
  const id = c.req.param('id')!
  const ledger = ledgerOf(c)
  const record = GENERATION_ID.test(id) ? await ledger.getGeneration(id) : undefined
  if (!record) throw generationNotFound(id)
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
}

/**
 * `POST /v1/generations/:id/cancel`: the tenant's Ledger marks a running generation `canceled` at
 * once and answers with that record (the decided outcome; its job, on whichever isolate, stops at its
 * next NFE boundary and tells its backend to stop). 409 `generation_finished` once it has finished.
 */
async function cancelGeneration(c: Context<AppEnv>): Promise<Response> {
  const id = c.req.param('id')!
  const decision = GENERATION_ID.test(id)
    ? await ledgerOf(c).cancelGeneration(id)
    : { kind: 'not_found' as const }
  if (decision.kind === 'not_found') throw generationNotFound(id)
  const options = renderOptions(c, false)
  if (decision.kind === 'finished') {
    const { status } = decision.record
    throw new ApiError(409, 'generation_finished', `Generation "${id}" already ${status}`, {
      details: { status },
    })
  }
  return c.json(await renderGeneration(decision.record, options))
}

export const generations = new Hono<AppEnv>()
  .post('/', auth('generations:write'), jsonBody(MAX_BODY_BYTES), createGeneration)
  .get('/:id', auth('generations:read'), getGeneration)
  .post('/:id/cancel', auth('generations:write'), cancelGeneration)
