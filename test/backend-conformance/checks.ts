/**
 * @module checks
 * The backend protocol conformance suite (backend/PROTOCOL.md) as plain async checks, so it runs both
 * from the CLI against any URL (`npm run conformance:backend -- <url>`) and inside vitest against ours.
 * It only speaks HTTP + safetensors (+ JSON/NDJSON/PNG for whole generations); nothing here knows how
 * the server is built. A check that needs an endpoint no listed model advertises (`capabilities`;
 * absent = `["forward", "step"]`, the protocol's first version) is skipped, never passed.
 */

import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { createCpuIntegrator, randn } from '@piflow/policy'
import {
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsFile,
  type SafetensorsTensor,
} from '@piflow/protocol'
import {
  type GenerateModel,
  generateChecks,
  generatePath,
  postGenerate,
  smallRequest,
} from './generate-checks.ts'
import { expectError, SECRET_HEADER } from './protocol.ts'

export interface ConformanceTarget {
  /** Base URL, e.g. `http://127.0.0.1:8788`. */
  url: string
  secret: string
}

export interface Check {
  name: string
  run(target: ConformanceTarget): Promise<void>
}

interface TensorSpec {
  name: string
  dtype: string
  shape: (number | string)[]
}

/** The parts of a /v1/models entry the suite relies on (PROTOCOL.md "required"). */
interface ModelEntry {
  id: string
  capabilities?: Capability[]
  policy: { type: 'gm'; k: number } | { type: 'dx'; n: number }
  latent: { channels: number; height: number; width: number }
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  maxBatchSize: number
  text?: { maxLength?: number; vocabSize?: number | null }
  guidance?: { default: number; input: string | null }
}

type Capability = 'forward' | 'step' | 'generate'

/** What a model serves; an entry without `capabilities` predates whole generations. */
export function capabilitiesOf(model: { capabilities?: string[] }): string[] {
  return model.capabilities ?? ['forward', 'step']
}

/** Thrown by a check whose endpoint no model of the target serves: reported as skipped. */
export class NotApplicable extends Error {}

/** Bodies above this must be refused with 413 by any implementation. */
export const PROTOCOL_MAX_BODY_BYTES = 64 * 1024 * 1024

// ---- HTTP helpers -------------------------------------------------------------------------------

async function call(
  target: ConformanceTarget,
  path: string,
  init: RequestInit & { auth?: boolean } = {},
): Promise<Response> {
  const headers = new Headers(init.headers)
  if (init.auth !== false) headers.set(SECRET_HEADER, target.secret)
  return fetch(new URL(path, target.url), { ...init, headers, signal: AbortSignal.timeout(60_000) })
}

async function listModels(target: ConformanceTarget): Promise<ModelEntry[]> {
  const response = await call(target, '/v1/models')
  assert.equal(response.status, 200, `/v1/models → ${response.status}`)
  const body = (await response.json()) as { models?: ModelEntry[] }
  assert.ok(Array.isArray(body.models) && body.models.length > 0, '/v1/models lists no model')
  return body.models
}

/** The first model serving `capability` (default forward); NotApplicable when none does. */
async function firstModel(
  target: ConformanceTarget,
  capability: Capability = 'forward',
): Promise<ModelEntry> {
  const model = (await listModels(target)).find((m) => capabilitiesOf(m).includes(capability))
  if (!model) throw new NotApplicable(`no model on this backend advertises "${capability}"`)
  return model
}

async function firstModelIfAny(target: ConformanceTarget, capability: Capability) {
  return (await listModels(target)).find((m) => capabilitiesOf(m).includes(capability))
}

// ---- request building -----------------------------------------------------------------------------

/** Valid inputs for `model`, batch `batch`, σ = `sigma`; x from the shared seeded noise. */
export function buildInputs(
  model: ModelEntry,
  batch: number,
  sigma: number,
  seed = 1,
): Record<string, SafetensorsTensor> {
  const tensors: Record<string, SafetensorsTensor> = {}
  for (const spec of model.inputs) {
    const shape = spec.shape.map((d, i) => (i === 0 || typeof d !== 'number' || d < 0 ? batch : d))
    if (i32or64(spec.dtype) === 'int64') {
      if (spec.shape.slice(1).some((d) => typeof d !== 'number' || d < 0)) {
        shape[1] = model.text?.maxLength ?? 8
      }
      const size = shape.reduce((a, b) => a * b, 1)
      const vocab = model.text?.vocabSize ?? 2
      const data = new BigInt64Array(size)
      for (let i = 0; i < size; i++) data[i] = BigInt((i * 7 + seed) % Math.min(vocab, 50))
      tensors[spec.name] = { dtype: 'I64', shape, data }
    } else if (spec.name === 'x') {
      const data = randn(new Float32Array(shape.reduce((a, b) => a * b, 1)), seed)
      tensors.x = { dtype: 'F32', shape, data }
    } else if (spec.name === 'sigma') {
      tensors.sigma = { dtype: 'F32', shape, data: new Float32Array(batch).fill(sigma) }
    } else {
      const value = spec.name === model.guidance?.input ? model.guidance.default : 1
      tensors[spec.name] = { dtype: 'F32', shape, data: new Float32Array(batch).fill(value) }
    }
  }
  return tensors
}

function i32or64(dtype: string) {
  return dtype === 'int64' || dtype === 'I64' ? 'int64' : 'float32'
}

async function post(
  target: ConformanceTarget,
  model: string,
  endpoint: 'forward' | 'step',
  body: Uint8Array,
): Promise<Response> {
  return call(target, `/v1/models/${encodeURIComponent(model)}/${endpoint}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: body as Uint8Array<ArrayBuffer>,
  })
}

async function decodeOk(response: Response): Promise<SafetensorsFile> {
  if (response.status !== 200)
    assert.fail(`expected 200, got ${response.status}: ${await response.text()}`)
  assert.match(response.headers.get('content-type') ?? '', /application\/octet-stream/)
  return decodeSafetensors(new Uint8Array(await response.arrayBuffer()))
}

function expectedOutputShapes(model: ModelEntry, batch: number): Record<string, number[]> {
  const { channels: c, height: h, width: w } = model.latent
  return model.policy.type === 'gm'
    ? {
        means_u: [batch, model.policy.k, c, h, w],
        logweights: [batch, model.policy.k, 1, h, w],
        logstds: [batch, 1, 1, 1, 1],
      }
    : { grid_u: [batch, model.policy.n, c, h, w] }
}

function assertFinite(name: string, data: ArrayLike<number>) {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) assert.fail(`${name}[${i}] = ${data[i]} is not finite`)
  }
}

function assertClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number) {
  assert.equal(got.length, want.length, `${name} length`)
  for (let i = 0; i < got.length; i++) {
    const g = got[i] as number
    const w = want[i] as number
    if (Math.abs(g - w) > tol * (1 + Math.abs(w))) assert.fail(`${name}[${i}]: ${g} vs ${w}`)
  }
}

function stepMetadata(overrides: Record<string, string> = {}) {
  return {
    sigma_dst: '0.5',
    shift: '3.2',
    total_substeps: '128',
    temperature: '1',
    eps: '0.0001',
    ...overrides,
  }
}

/** Sends a raw HTTP request whose body may be a lie or endless, returns the status (or null). */
function rawPost(
  target: ConformanceTarget,
  path: string,
  options: { contentLength?: number; chunks: number; chunkBytes: number; contentType?: string },
): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, target.url)
    const headers: Record<string, string | number> = {
      [SECRET_HEADER]: target.secret,
      'Content-Type': options.contentType ?? 'application/octet-stream',
    }
    if (options.contentLength !== undefined) headers['Content-Length'] = options.contentLength
    const req = httpRequest(url, { method: 'POST', headers })
    let settled = false
    const done = (status: number | null) => {
      if (settled) return
      settled = true
      req.destroy()
      resolve(status)
    }
    req.on('response', (res) => {
      res.resume()
      done(res.statusCode ?? null)
    })
    // A server that answers 413 and closes mid-upload shows up as EPIPE/ECONNRESET after the
    // response: only an error before any response counts as a failure.
    req.on('error', (error) => (settled ? undefined : reject(error)))
    const chunk = new Uint8Array(options.chunkBytes)
    let sent = 0
    const pump = () => {
      while (!settled && sent < options.chunks) {
        sent++
        if (!req.write(chunk)) {
          req.once('drain', pump)
          return
        }
      }
      if (!settled && options.contentLength === undefined) req.end()
    }
    pump()
    setTimeout(() => done(null), 30_000).unref()
  })
}

// ---- the checks -------------------------------------------------------------------------------------

/** Every check of the suite, in order. */
export const checks: Check[] = [
  {
    name: 'GET /healthz answers 200 {status:"ok"}',
    async run(t) {
      const response = await call(t, '/healthz', { auth: false })
      assert.equal(response.status, 200)
      assert.equal(((await response.json()) as { status?: string }).status, 'ok')
    },
  },
  {
    name: 'GET /readyz is ready with an execution provider and models',
    async run(t) {
      const response = await call(t, '/readyz', { auth: false })
      assert.equal(response.status, 200)
      const body = (await response.json()) as Record<string, unknown>
      assert.equal(body.status, 'ready')
      assert.equal(typeof body.executionProvider, 'string')
      assert.ok(Array.isArray(body.models) && body.models.length > 0, 'models')
    },
  },
  {
    name: '/v1 without or with a wrong secret is 401 unauthorized',
    async run(t) {
      await expectError(await call(t, '/v1/models', { auth: false }), 401, 'unauthorized')
      await expectError(
        await call(t, '/v1/models', { auth: false, headers: { [SECRET_HEADER]: `${t.secret}x` } }),
        401,
        'unauthorized',
      )
      const forwardModel = await firstModelIfAny(t, 'forward')
      if (forwardModel) {
        const body = encodeSafetensors(buildInputs(forwardModel, 1, 1))
        const response = await fetch(new URL(`/v1/models/${forwardModel.id}/forward`, t.url), {
          method: 'POST',
          body: body as Uint8Array<ArrayBuffer>,
        })
        await expectError(response, 401, 'unauthorized')
      }
      const generateModel = await firstModelIfAny(t, 'generate')
      if (generateModel) {
        const response = await postGenerate(
          { ...t, secret: '' },
          generateModel.id,
          smallRequest(generateModel as unknown as GenerateModel),
        )
        await expectError(response, 401, 'unauthorized')
      }
    },
  },
  {
    name: 'GET /v1/models lists models with policy, latent, maxBatchSize and what their capabilities need',
    async run(t) {
      for (const model of await listModels(t)) {
        assert.equal(typeof model.id, 'string')
        assert.ok(model.policy.type === 'gm' || model.policy.type === 'dx', 'policy.type')
        for (const d of Object.values(model.latent))
          assert.ok(Number.isInteger(d) && d > 0, 'latent')
        assert.ok(Number.isInteger(model.maxBatchSize) && model.maxBatchSize >= 1, 'maxBatchSize')
        const capabilities = capabilitiesOf(model)
        assert.ok(capabilities.length > 0, 'capabilities')
        for (const c of capabilities)
          assert.ok(['forward', 'step', 'generate'].includes(c), `unknown capability ${c}`)
        const one = await call(t, `/v1/models/${encodeURIComponent(model.id)}`)
        assert.equal(one.status, 200)
        assert.equal(((await one.json()) as ModelEntry).id, model.id)
        if (capabilities.includes('generate'))
          assertGenerateEntry(model as unknown as GenerateModel)
        if (!capabilities.includes('forward') && !capabilities.includes('step')) continue
        const names = model.inputs.map((i) => i.name)
        for (const required of ['x', 'sigma', 'tokens'])
          assert.ok(names.includes(required), required)
        const outputs = model.outputs.map((o) => o.name).sort()
        assert.deepEqual(outputs, Object.keys(expectedOutputShapes(model, 1)).sort())
      }
    },
  },
  {
    name: 'unknown model is 404 model_not_found (listing, forward, step, generate)',
    async run(t) {
      await expectError(await call(t, '/v1/models/no-such-model'), 404, 'model_not_found')
      const forwardModel = await firstModelIfAny(t, 'forward')
      if (forwardModel) {
        const body = encodeSafetensors(buildInputs(forwardModel, 1, 1))
        await expectError(await post(t, 'no-such-model', 'forward', body), 404, 'model_not_found')
        await expectError(await post(t, 'no-such-model', 'step', body), 404, 'model_not_found')
      }
      const generateModel = await firstModelIfAny(t, 'generate')
      if (generateModel) {
        const request = smallRequest(generateModel as unknown as GenerateModel)
        await expectError(await postGenerate(t, 'no-such-model', request), 404, 'model_not_found')
      }
    },
  },
  {
    name: 'forward returns the policy tensors with the right names, dtypes, shapes, finite',
    async run(t) {
      const model = await firstModel(t)
      for (const batch of [1, Math.min(3, model.maxBatchSize)]) {
        const out = await decodeOk(
          await post(t, model.id, 'forward', encodeSafetensors(buildInputs(model, batch, 1))),
        )
        const expected = expectedOutputShapes(model, batch)
        assert.deepEqual(Object.keys(out.tensors).sort(), Object.keys(expected).sort())
        for (const [name, shape] of Object.entries(expected)) {
          const tensor = out.tensors[name] as SafetensorsTensor
          assert.equal(tensor.dtype, 'F32', `${name} dtype`)
          assert.deepEqual(tensor.shape, shape, `${name} shape`)
          assertFinite(name, tensor.data as Float32Array)
        }
      }
    },
  },
  {
    name: 'forward of a batch equals forwards of its rows (batch independence)',
    async run(t) {
      const model = await firstModel(t)
      if (model.maxBatchSize < 2) return
      const pair = buildInputs(model, 2, 0.7, 11)
      const both = await decodeOk(await post(t, model.id, 'forward', encodeSafetensors(pair)))
      for (let row = 0; row < 2; row++) {
        const single: Record<string, SafetensorsTensor> = {}
        for (const [name, tensor] of Object.entries(pair)) {
          const rowSize = tensor.data.length / 2
          single[name] = {
            ...tensor,
            shape: [1, ...tensor.shape.slice(1)],
            data: tensor.data.slice(row * rowSize, (row + 1) * rowSize),
          } as SafetensorsTensor
        }
        const one = await decodeOk(await post(t, model.id, 'forward', encodeSafetensors(single)))
        for (const [name, tensor] of Object.entries(one.tensors)) {
          const all = both.tensors[name]?.data as Float32Array
          const rowSize = all.length / 2
          assertClose(
            name,
            tensor.data as Float32Array,
            all.subarray(row * rowSize, (row + 1) * rowSize),
            1e-4,
          )
        }
      }
    },
  },
  {
    name: 'step returns x at sigma_dst: finite, (B,C,H,W), equal to integrating forward locally',
    async run(t) {
      const model = await firstModel(t, 'step')
      const inputs = buildInputs(model, 2, 0.9, 5)
      const metadata = stepMetadata({ sigma_dst: '0.4', temperature: '0.7' })
      const stepped = await decodeOk(
        await post(t, model.id, 'step', encodeSafetensors(inputs, metadata)),
      )
      const { channels, height, width } = model.latent
      const x = stepped.tensors.x as SafetensorsTensor
      assert.equal(x.dtype, 'F32')
      assert.deepEqual(x.shape, [2, channels, height, width])
      assertFinite('x', x.data as Float32Array)
      assert.equal(Number(stepped.metadata.sigma), 0.4)
      assert.ok(Number(stepped.metadata.num_substeps) >= 1, 'num_substeps')

      // The same segment integrated here with the shared policy module from the forward's output.
      const forward = await decodeOk(await post(t, model.id, 'forward', encodeSafetensors(inputs)))
      const local = ((inputs.x as SafetensorsTensor).data as Float32Array).slice()
      const f32 = (name: string) => forward.tensors[name]?.data as Float32Array
      const output =
        model.policy.type === 'gm'
          ? {
              type: 'gm' as const,
              k: model.policy.k,
              meansU: f32('means_u'),
              logweights: f32('logweights'),
              logstds: f32('logstds'),
            }
          : { type: 'dx' as const, n: model.policy.n, gridU: f32('grid_u') }
      if (output.type === 'dx') return // DX parameters live in the manifest; shape checks suffice
      const { numSubsteps } = await createCpuIntegrator().integrate(output, local, {
        shape: { batch: 2, channels, height, width },
        sigmaSrc: 0.9,
        sigmaDst: 0.4,
        shift: 3.2,
        totalSubsteps: 128,
        eps: 1e-4,
        temperature: 0.7,
      })
      assert.equal(Number(stepped.metadata.num_substeps), numSubsteps)
      assertClose('x', x.data as Float32Array, local, 1e-3)
    },
  },
  {
    name: 'step with sigma_dst = sigma leaves x unchanged',
    async run(t) {
      const model = await firstModel(t, 'step')
      const inputs = buildInputs(model, 1, 0.5, 9)
      const out = await decodeOk(
        await post(
          t,
          model.id,
          'step',
          encodeSafetensors(inputs, stepMetadata({ sigma_dst: '0.5' })),
        ),
      )
      assertClose('x', out.tensors.x?.data as Float32Array, inputs.x?.data as Float32Array, 1e-6)
    },
  },
  {
    name: 'bad inputs get 400 with stable codes, and the server keeps serving',
    async run(t) {
      const model = await firstModel(t)
      const good = () => buildInputs(model, 1, 1)
      const send = (
        tensors: Record<string, SafetensorsTensor>,
        metadata?: Record<string, string>,
      ) => post(t, model.id, 'forward', encodeSafetensors(tensors, metadata))

      const missing = good()
      delete missing.sigma
      await expectError(await send(missing), 400, 'missing_tensor')

      await expectError(
        await send({ ...good(), extra: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }),
        400,
        'unexpected_tensor',
      )
      const wrongDtype = good()
      const x = wrongDtype.x as SafetensorsTensor
      wrongDtype.x = {
        dtype: 'F64',
        shape: x.shape,
        data: Float64Array.from(x.data as Float32Array),
      }
      await expectError(await send(wrongDtype), 400, 'invalid_dtype')

      const wrongShape = good()
      const xs = wrongShape.x as SafetensorsTensor
      wrongShape.x = {
        dtype: 'F32',
        shape: [1, xs.shape[1] as number, 2, 2],
        data: new Float32Array(4 * (xs.shape[1] as number)),
      }
      await expectError(await send(wrongShape), 400, 'invalid_shape')

      const batchMismatch = good()
      batchMismatch.sigma = { dtype: 'F32', shape: [2], data: new Float32Array([1, 1]) }
      await expectError(await send(batchMismatch), 400, 'invalid_shape')

      const nan = good()
      ;(nan.x?.data as Float32Array)[3] = Number.NaN
      await expectError(await send(nan), 400, 'non_finite')
      const inf = good()
      ;(inf.x?.data as Float32Array)[0] = Number.POSITIVE_INFINITY
      await expectError(await send(inf), 400, 'non_finite')

      const badSigma = good()
      badSigma.sigma = { dtype: 'F32', shape: [1], data: new Float32Array([2]) }
      await expectError(await send(badSigma), 400, 'invalid_value')

      const badToken = good()
      ;(badToken.tokens?.data as BigInt64Array)[0] = -1n
      await expectError(await send(badToken), 400, 'invalid_value')

      await expectError(
        await send(buildInputs(model, model.maxBatchSize + 1, 1)),
        400,
        'batch_too_large',
      )

      const garbage = new Uint8Array(64).fill(0xab)
      await expectError(await post(t, model.id, 'forward', garbage), 400, 'malformed_safetensors')
      const truncated = encodeSafetensors(good()).subarray(0, 100)
      await expectError(await post(t, model.id, 'forward', truncated), 400, 'malformed_safetensors')
      await expectError(
        await post(t, model.id, 'forward', new Uint8Array(0)),
        400,
        'malformed_safetensors',
      )

      const stepBody = (metadata: Record<string, string>) =>
        post(t, model.id, 'step', encodeSafetensors(good(), metadata))
      const { sigma_dst: _, ...noSigmaDst } = stepMetadata()
      await expectError(await stepBody(noSigmaDst), 400, 'invalid_metadata')
      await expectError(await stepBody(stepMetadata({ shift: 'abc' })), 400, 'invalid_metadata')
      await expectError(
        await stepBody(stepMetadata({ total_substeps: '0' })),
        400,
        'invalid_metadata',
      )
      await expectError(await stepBody(stepMetadata({ sigma_dst: '1.5' })), 400, 'invalid_metadata')

      // still serving
      await decodeOk(await send(good()))
    },
  },
  {
    name: `oversize bodies are 413 payload_too_large (declared, and streamed without a length)`,
    async run(t) {
      // each endpoint with the content type it accepts, so only the size is wrong
      const targets: { path: string; contentType: string }[] = []
      const forwardModel = await firstModelIfAny(t, 'forward')
      if (forwardModel) {
        const path = `/v1/models/${encodeURIComponent(forwardModel.id)}/forward`
        targets.push({ path, contentType: 'application/octet-stream' })
      }
      const generateModel = await firstModelIfAny(t, 'generate')
      if (generateModel)
        targets.push({ path: generatePath(generateModel.id), contentType: 'application/json' })
      for (const { path, contentType } of targets) {
        // Declares 1 GiB, sends 64 KiB: the answer must come from the header alone.
        const declared = await rawPost(t, path, {
          contentLength: 2 ** 30,
          chunks: 1,
          chunkBytes: 65536,
          contentType,
        })
        assert.equal(declared, 413, `${path}: declared Content-Length over the limit`)
        // Chunked, no length: must be cut off once past the limit (at most 80 MiB is sent).
        const streamed = await rawPost(t, path, {
          chunks: 80,
          chunkBytes: 1024 * 1024,
          contentType,
        })
        assert.equal(streamed, 413, `${path}: streamed body over the limit`)
      }
      const after = await call(t, '/healthz', { auth: false })
      assert.equal(after.status, 200)
    },
  },
  {
    name: 'unknown route is a JSON 404',
    async run(t) {
      await expectError(await call(t, '/v1/nope'), 404, 'not_found')
    },
  },
]

/** The whole-generation checks, each against the first model that advertises `generate`. */
for (const check of generateChecks) {
  checks.push({
    name: check.name,
    async run(t) {
      await check.run(t, (await firstModel(t, 'generate')) as unknown as GenerateModel)
    },
  })
}

function assertGenerateEntry(model: GenerateModel) {
  const { image } = model
  for (const key of [
    'defaultWidth',
    'defaultHeight',
    'minSide',
    'maxSide',
    'multipleOf',
    'maxPixels',
  ])
    assert.ok(Number.isInteger(image?.[key as keyof typeof image]), `image.${key}`)
  assert.ok(Number.isInteger(model.text?.maxPromptChars), 'text.maxPromptChars')
  assert.ok(model.nfeOptions.includes(model.defaultNfe), 'defaultNfe in nfeOptions')
  assert.ok(Number.isInteger(model.maxCount) && model.maxCount >= 1, 'maxCount')
  assert.ok('default' in (model.guidance ?? {}), 'guidance.default (null: none)')
}

/** Runs one check under a test runner: a check that does not apply calls `skip(reason)` instead. */
export async function runCheck(
  check: Check,
  target: ConformanceTarget,
  skip: (reason: string) => void,
): Promise<void> {
  try {
    await check.run(target)
  } catch (error) {
    if (error instanceof NotApplicable) skip(error.message)
    else throw error
  }
}

export interface CheckResult {
  name: string
  ok: boolean
  /** Why the check did not apply to this backend (ok stays true: nothing failed, nothing passed). */
  skipped?: string
  error?: string
  ms: number
}

/** Runs every check against `target`; returns one result per check (never throws). */
export async function runConformance(
  target: ConformanceTarget,
  onResult?: (result: CheckResult) => void,
) {
  const results: CheckResult[] = []
  for (const check of checks) {
    const started = performance.now()
    let result: CheckResult
    try {
      await check.run(target)
      result = { name: check.name, ok: true, ms: performance.now() - started }
    } catch (error) {
      const ms = performance.now() - started
      result =
        error instanceof NotApplicable
          ? { name: check.name, ok: true, skipped: error.message, ms }
          : {
              name: check.name,
              ok: false,
              error: error instanceof Error ? error.message : String(error),
              ms,
            }
    }
    results.push(result)
    onResult?.(result)
  }
  return results
}
