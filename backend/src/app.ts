/**
 * @module app
 * The backend's HTTP surface (PROTOCOL.md) as a Hono app: health and readiness, model listing, the
 * student forward, and the step (forward + policy integration on the backend).
 */

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import {
  encodeSafetensors,
  isPolicyError,
  type PolicyOutput,
  type SafetensorsTensor,
} from '@piflow/policy'
import { Hono } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { Batcher, FeedTensor, ForwardResult, OutputTensor } from './batcher.ts'
import { readBody } from './body.ts'
import { BackendError, InvalidInputError } from './errors.ts'
import { IntegrationError, type IntegratorPool } from './integrator-pool.ts'
import type { ExecutionProvider, LoadedModel, RefusedModel } from './models.ts'
import type { NormalizedBackendOptions } from './options.ts'
import {
  BATCH_SIZE_HEADER,
  decodeBody,
  EXECUTION_PROVIDER_HEADER,
  parseStepMetadata,
  SECRET_HEADER,
  selectStudent,
  validateInputs,
} from './protocol.ts'

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

type Env = { Variables: { requestId: string } }

const REQUEST_ID = /^[\w.:-]{1,128}$/

/** Builds the Hono app. */
export function createApp(ctx: AppContext): Hono<Env> {
  const app = new Hono<Env>()
  const secretDigest = sha256(ctx.options.secret)

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

  app.post('/v1/models/:id/forward', async (c) => {
    const model = findModel(ctx, c.req.param('id'))
    const request = await readRequest(c.req.raw, model, ctx)
    const result = await runForward(ctx, model, request, c.req.raw.signal)
    const tensors: Record<string, SafetensorsTensor> = {}
    for (const [name, tensor] of Object.entries(result.outputs)) {
      tensors[name] = { dtype: 'F32', shape: tensor.dims, data: tensor.data }
    }
    return binary(encodeSafetensors(tensors), result, ctx)
  })

  app.post('/v1/models/:id/step', async (c) => {
    const model = findModel(ctx, c.req.param('id'))
    const request = await readRequest(c.req.raw, model, ctx)
    const sigma = request.feeds.sigma?.data as Float32Array
    const sigmaSrc = sigma[0] as number
    if (!sigma.every((s) => s === sigmaSrc)) {
      throw new InvalidInputError(
        'invalid_value',
        'step needs one sigma shared by the batch',
        'sigma',
      )
    }
    const meta = parseStepMetadata(request.metadata, sigmaSrc)
    const result = await runForward(ctx, model, request, c.req.raw.signal)
    const { latent, policy } = model.manifest
    const x = (request.feeds.x as FeedTensor).data.slice() as Float32Array
    const started = performance.now()
    const { numSubsteps } = await integrate(
      ctx,
      toPolicyOutput(model, result.outputs),
      x,
      {
        shape: { batch: request.batch, ...latent },
        sigmaSrc,
        sigmaDst: meta.sigma_dst,
        shift: meta.shift,
        totalSubsteps: meta.total_substeps,
        eps: meta.eps,
        temperature: meta.temperature,
        ...(policy.type === 'dx'
          ? { dx: { segmentSize: policy.segmentSize, shift: policy.shift, mode: policy.mode } }
          : {}),
      },
      c.req.raw.signal,
    )
    const integrateMs = performance.now() - started
    const bytes = encodeSafetensors(
      {
        x: {
          dtype: 'F32',
          shape: [request.batch, latent.channels, latent.height, latent.width],
          data: x,
        },
      },
      { sigma: String(meta.sigma_dst), num_substeps: String(numSubsteps) },
    )
    const response = binary(bytes, result, ctx)
    response.headers.append('Server-Timing', `integrate;dur=${integrateMs.toFixed(2)}`)
    return response
  })

  return app
}

interface ParsedRequest {
  feeds: ReturnType<typeof validateInputs>['feeds']
  batch: number
  metadata: Record<string, string>
  student: LoadedModel['defaultStudent']
}

async function readRequest(
  raw: Request,
  model: LoadedModel,
  ctx: AppContext,
): Promise<ParsedRequest> {
  if (ctx.isDraining()) {
    throw new BackendError(503, 'shutting_down', 'the backend is shutting down', {
      headers: { 'Retry-After': '1' },
    })
  }
  const type = raw.headers.get('content-type')
  if (type !== null && !/^application\/(octet-stream|safetensors)\b/i.test(type)) {
    throw new BackendError(
      415,
      'unsupported_media_type',
      `body must be application/octet-stream (safetensors), got ${type}`,
    )
  }
  // The body counts against the request's deadline: a stalled upload is refused, not waited for.
  const body = await readBody(raw, ctx.options.maxBodyBytes, ctx.options.requestTimeoutMs)
  const { tensors, metadata } = decodeBody(body)
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

function toPolicyOutput(
  model: LoadedModel,
  outputs: Record<string, OutputTensor>,
): PolicyOutput<Float32Array> {
  const { policy } = model.manifest
  const get = (name: string) => {
    const tensor = outputs[name]
    if (tensor === undefined) throw new Error(`student output "${name}" missing`)
    return tensor.data
  }
  if (policy.type === 'gm') {
    return {
      type: 'gm',
      k: policy.k,
      meansU: get('means_u'),
      logweights: get('logweights'),
      logstds: get('logstds'),
    }
  }
  return { type: 'dx', n: policy.n, gridU: get('grid_u') }
}

function binary(bytes: Uint8Array, result: ForwardResult, ctx: AppContext): Response {
  return new Response(bytes as Uint8Array<ArrayBuffer>, {
    status: 200,
    headers: {
      'Content-Type': 'application/octet-stream',
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
