/**
 * @module app
 * The backend's HTTP surface (PROTOCOL.md) as a Hono app: health and readiness, model listing, the
 * student forward, and the step (forward + policy integration on the backend).
 */

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import { isPolicyError } from '@piflow/policy'
import {
  BATCH_SIZE_HEADER,
  CANCEL_ID_HEADER,
  EXECUTION_PROVIDER_HEADER,
  encodeForwardResponse,
  encodeStepResponse,
  guardBody,
  policyOutputFrom,
  SECRET_HEADER,
  TENSORS_CONTENT_TYPE,
} from '@piflow/protocol'
import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { createMiddleware } from 'hono/factory'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { Batcher, FeedTensor, ForwardResult } from './batcher.ts'
import { type Cancellations, createCancellations } from './cancellations.ts'
import { BackendError, InvalidInputError } from './errors.ts'
import { IntegrationError, type IntegratorPool } from './integrator-pool.ts'
import type { ExecutionProvider, LoadedModel, RefusedModel } from './models.ts'
import type { NormalizedBackendOptions } from './options.ts'
import { decodeBody, selectStudent, stepSegment, validateInputs } from './protocol.ts'
import { readTensorBody } from './tensor-body.ts'

/** What the app serves; built by `createBackend`. */
export interface AppContext {
  options: NormalizedBackendOptions
  executionProvider: ExecutionProvider
  models: Map<string, LoadedModel>
  refused: RefusedModel[]
  batcher: Batcher
  /** Runs step integrations (worker threads, or inline). */
  integrator: IntegratorPool
  /** True once shutdown began: new work gets 503 `shutting_down`. */
  isDraining: () => boolean
}

type Env = {
  Variables: {
    requestId: string
    model: LoadedModel
    /** aborts when `POST /v1/requests/:id/cancel` names this request's X-Piflow-Request-Id */
    cancelSignal: AbortSignal | undefined
  }
}

const REQUEST_ID = /^[\w.:-]{1,128}$/

/** Builds the Hono app. */
export function createApp(ctx: AppContext): Hono<Env> {
  const app = new Hono<Env>()
  const secretDigest = sha256(ctx.options.secret)
  const cancellations = createCancellations()

  app.use(async function requestId(c, next) {
    const given = c.req.header('x-request-id')
    const id = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID()
    c.set('requestId', id)
    await next()
    c.header('X-Request-Id', id)
  })

  app.onError((error, c) => {
    const requestId = c.get('requestId') ?? randomUUID()
    if (!(error instanceof BackendError)) {
      ctx.options.log(
        `piflow-backend: ${requestId} internal error: ${(error as Error)?.stack ?? error}`,
      )
    }
    const known =
      error instanceof BackendError
        ? error
        : new BackendError(500, 'internal', 'internal error (see the backend log)')
    return c.json(
      { error: { code: known.code, message: known.message }, requestId },
      known.status as ContentfulStatusCode,
      { ...known.headers, 'X-Request-Id': requestId },
    )
  })

  app.notFound((c) => {
    throw new BackendError(404, 'not_found', `no route ${c.req.method} ${c.req.path}`)
  })

  app.get('/healthz', (c) => c.json({ status: 'ok' }))

  app.get('/readyz', (c) => {
    const ready = !ctx.isDraining() && ctx.models.size > 0
    return c.json(
      {
        status: ready ? 'ready' : ctx.isDraining() ? 'draining' : 'no_models',
        executionProvider: ctx.executionProvider,
        models: [...ctx.models.keys()],
        refused: ctx.refused,
        batching: {
          maxBatchSize: ctx.options.maxBatchSize,
          maxWaitMs: ctx.options.maxWaitMs,
          queueLimit: ctx.options.queueLimit,
          requestTimeoutMs: ctx.options.requestTimeoutMs,
        },
        stats: ctx.batcher.stats(),
      },
      ready ? 200 : 503,
    )
  })

  // Everything under /v1 needs the shared secret; digests make the comparison constant-time for any
  // length of guess.
  app.use('/v1/*', async function auth(c, next) {
    const given = c.req.header(SECRET_HEADER)
    if (given === undefined || !timingSafeEqual(sha256(given), secretDigest)) {
      throw new BackendError(401, 'unauthorized', `missing or wrong ${SECRET_HEADER} header`)
    }
    await next()
  })

  app.get('/v1/models', (c) =>
    c.json({
      executionProvider: ctx.executionProvider,
      models: [...ctx.models.values()].map((m) => describeModel(m, ctx)),
    }),
  )

  app.get('/v1/models/:id', (c) => c.json(describeModel(findModel(ctx, c.req.param('id')), ctx)))

  // Stops the forwards and steps in flight under one caller id (cancellations.ts).
  app.post('/v1/requests/:id/cancel', (c) => {
    const id = c.req.param('id')
    if (!REQUEST_ID.test(id)) {
      throw new BackendError(400, 'invalid_value', `request id must match ${REQUEST_ID}`)
    }
    const cancelled = cancellations.cancel(id)
    if (cancelled === 0) {
      throw new BackendError(404, 'request_not_found', `no request "${id}" in flight here`)
    }
    return c.json({ id, status: 'cancelled' as const, requests: cancelled })
  })

  app.post('/v1/models/:id/forward', acceptTensors(ctx, cancellations), async (c) => {
    const model = c.var.model
    const request = await readRequest(c, ctx)
    const result = await runForward(ctx, model, request, callerSignal(c))
    return binary(encodeForwardResponse(result.outputs), result, ctx)
  })

  app.post('/v1/models/:id/step', acceptTensors(ctx, cancellations), async (c) => {
    const model = c.var.model
    const request = await readRequest(c, ctx)
    const sigma = request.feeds.sigma?.data as Float32Array
    const sigmaSrc = sigma[0] as number
    if (!sigma.every((s) => s === sigmaSrc)) {
      throw new InvalidInputError(
        'invalid_value',
        'step needs one sigma shared by the batch',
        'sigma',
      )
    }
    const segment = stepSegment(request.metadata, model.manifest, request.batch, sigmaSrc)
    const signal = callerSignal(c)
    const result = await runForward(ctx, model, request, signal)
    const x = (request.feeds.x as FeedTensor).data.slice() as Float32Array
    const started = performance.now()
    const output = policyOutputFrom(model.manifest, segment.shape, result.outputs)
    const { numSubsteps } = await integrate(ctx, output, x, segment, signal)
    const integrateMs = performance.now() - started
    const bytes = encodeStepResponse(x, segment.shape, { sigmaDst: segment.sigmaDst, numSubsteps })
    const response = binary(bytes, result, ctx)
    response.headers.append('Server-Timing', `integrate;dur=${integrateMs.toFixed(2)}`)
    return response
  })

  return app
}

/** The caller's connection closing or its cancel by id: either stops the request. */
function callerSignal(c: Context<Env>): AbortSignal {
  const cancel = c.var.cancelSignal
  return cancel ? AbortSignal.any([c.req.raw.signal, cancel]) : c.req.raw.signal
}

interface ParsedRequest {
  feeds: ReturnType<typeof validateInputs>['feeds']
  batch: number
  metadata: Record<string, string>
  student: LoadedModel['defaultStudent']
}

/**
 * What a tensor request must pass before its body is read, in this order: the model exists (404), the
 * server is not draining (503), the body is safetensors (415), and it is within `maxBodyBytes` (413,
 * hono's bodyLimit: from Content-Length before a byte is read, or while streaming a body without one,
 * so memory never grows past the limit), and it arrives within `requestTimeoutMs` (408; a hang-up is 499).
 * Sets `c.var.model`, and registers the request under its `X-Piflow-Request-Id` (if any) for cancels.
 */
function acceptTensors(ctx: AppContext, cancellations: Cancellations) {
  const limit = bodyLimit({
    maxSize: ctx.options.maxBodyBytes,
    onError: () => {
      throw new BackendError(
        413,
        'payload_too_large',
        `body exceeds the limit of ${ctx.options.maxBodyBytes} bytes`,
        { headers: { Connection: 'close' } },
      )
    },
  })
  return createMiddleware<Env>(async (c, next) => {
    c.set('model', findModel(ctx, c.req.param('id') ?? ''))
    if (ctx.isDraining()) {
      throw new BackendError(503, 'shutting_down', 'the backend is shutting down', {
        headers: { 'Retry-After': '1' },
      })
    }
    const type = c.req.header('content-type')
    if (type !== undefined && !/^application\/(octet-stream|safetensors)\b/i.test(type)) {
      throw new BackendError(
        415,
        'unsupported_media_type',
        `body must be application/octet-stream (safetensors), got ${type}`,
      )
    }
    // The body counts against the request's deadline: a stalled upload is refused, not waited for.
    c.req.raw = guardBody(c.req.raw, {
      timeoutMs: ctx.options.requestTimeoutMs,
      onTimeout: () =>
        new BackendError(
          408,
          'request_timeout',
          `body not received within ${ctx.options.requestTimeoutMs} ms`,
          { headers: { Connection: 'close' } },
        ),
      onAbort: () =>
        new BackendError(499, 'cancelled', 'the client hung up before its body arrived'),
    })
    const callerId = c.req.header(CANCEL_ID_HEADER)
    if (callerId !== undefined && !REQUEST_ID.test(callerId)) {
      throw new BackendError(400, 'invalid_value', `${CANCEL_ID_HEADER} must match ${REQUEST_ID}`)
    }
    const tracked = cancellations.track(callerId)
    c.set('cancelSignal', tracked.signal)
    try {
      await limit(c, next)
    } finally {
      tracked.release()
    }
  })
}

/** The accepted body's tensors, checked against the student the request addresses. */
async function readRequest(c: Context<Env>, ctx: AppContext): Promise<ParsedRequest> {
  const model = c.var.model
  const { tensors, metadata } = decodeBody(await readTensorBody(c.req.raw))
  const student = selectStudent(model, metadata)
  const { feeds, batch } = validateInputs(model, student, tensors, ctx.options.maxBatchSize)
  return { feeds, batch, metadata, student }
}

/** Queues the forward with a deadline and the client's signal; maps aborts to 504 / 499. */
async function runForward(
  ctx: AppContext,
  model: LoadedModel,
  request: ParsedRequest,
  clientSignal: AbortSignal,
): Promise<ForwardResult> {
  const timeout = new AbortController()
  const timer = setTimeout(
    () =>
      timeout.abort(
        new BackendError(
          504,
          'timeout',
          `no result within ${ctx.options.requestTimeoutMs} ms (queue + forward)`,
        ),
      ),
    ctx.options.requestTimeoutMs,
  )
  const cancelled = new AbortController()
  const onClientGone = () =>
    cancelled.abort(new BackendError(499, 'cancelled', 'the client closed the connection'))
  clientSignal.addEventListener('abort', onClientGone, { once: true })
  if (clientSignal.aborted) onClientGone()
  try {
    return await ctx.batcher.forward(
      `${model.id}/${request.student.fileKey}`,
      request.student.session,
      request.feeds,
      AbortSignal.any([timeout.signal, cancelled.signal]),
    )
  } finally {
    clearTimeout(timer)
    clientSignal.removeEventListener('abort', onClientGone)
  }
}

/** The policy module refusing a segment means the request's parameters were unusable: a 400. */
async function integrate(ctx: AppContext, ...args: Parameters<IntegratorPool['integrate']>) {
  try {
    return await ctx.integrator.integrate(...args)
  } catch (error) {
    if (args[3]?.aborted) {
      throw new BackendError(499, 'cancelled', 'the client closed the connection')
    }
    if (error instanceof IntegrationError || isPolicyError(error)) {
      throw new InvalidInputError(
        'invalid_metadata',
        `policy integration refused: ${(error as Error).message}`,
      )
    }
    throw error
  }
}

function binary(bytes: Uint8Array, result: ForwardResult, ctx: AppContext): Response {
  return new Response(bytes as Uint8Array<ArrayBuffer>, {
    status: 200,
    headers: {
      'Content-Type': TENSORS_CONTENT_TYPE,
      [BATCH_SIZE_HEADER]: String(result.batchSize),
      [EXECUTION_PROVIDER_HEADER]: ctx.executionProvider,
      'Server-Timing': `queue;dur=${result.queueMs.toFixed(2)}, forward;dur=${result.runMs.toFixed(2)}`,
    },
  })
}

function findModel(ctx: AppContext, id: string): LoadedModel {
  const model = ctx.models.get(id)
  if (model === undefined) {
    throw new BackendError(404, 'model_not_found', `model "${id}" is not served here`)
  }
  return model
}

/** The /v1/models entry: what a caller needs to build requests and read responses. */
function describeModel(model: LoadedModel, ctx: AppContext) {
  const { manifest } = model
  return {
    id: model.id,
    name: manifest.name,
    policy: manifest.policy,
    latent: manifest.latent,
    text: {
      maxLength: manifest.text.maxLength,
      padId: manifest.text.padId,
      vocabSize: model.vocabSize,
    },
    guidance: manifest.guidance,
    defaultNfe: manifest.sampling.defaultNfe,
    nfeOptions: manifest.sampling.nfeOptions,
    students: Object.fromEntries(
      Object.entries(manifest.sampling.perNfe).map(([nfe, spec]) => {
        const file = manifest.files[spec.onnx]
        return [
          nfe,
          { file: spec.onnx, sha256: file?.sha256, inputs: file?.inputs, outputs: file?.outputs },
        ]
      }),
    ),
    inputs: model.defaultStudent.file.inputs,
    outputs: model.defaultStudent.file.outputs,
    maxBatchSize: ctx.options.maxBatchSize,
    executionProvider: ctx.executionProvider,
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}
