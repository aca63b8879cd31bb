/**
 * @module remote-generation
 * The third integration path (ARCHITECTURE.md §3.5, §7): a model generated whole on its backend (the
 * released π-Flow students on the PyTorch backend). One `POST /v1/models/:id/generate` per generation;
 * its NDJSON events (backend/PROTOCOL.md "Whole generations") become the job's progress and images:
 * each PNG is checked (hash, size, PNG header), written to R2 and reported in index order, exactly as
 * the edge-integrated path reports its own. The backend's `X-Request-Id` is the worker's generation id,
 * so a cancel names it ({@link cancelRemoteGeneration}); aborting the job closes the stream and relays a
 * cancel, and a worker that dies drops the stream, which cancels on the backend too.
 */
import { type GenerateEvent, generateEventSchema, generateRequestBody } from '@piflow/protocol'
import { BackendRouter } from './backends.ts'
import { base64ToBytes, sha256Hex } from './crypto.ts'
import { backendsFor, type Settings } from './env.ts'
import { ApiError, BackendError } from './errors.ts'
import type { GenerationHooks, GenerationOutcome } from './generate.ts'
import { orderedImageWrites, storedImage } from './images.ts'
import type { NormalizedRequest, ProgressInfo, StoredImage } from './records.ts'
import { forgetRemoteModel, type RemoteModel, remoteSigmas } from './remote-models.ts'

/** A generation whose every step runs on the model's backend. */
export interface RemoteGenerationPlan {
  model: RemoteModel
  request: NormalizedRequest
  /** the worker's generation id: sent as the backend's `X-Request-Id`, what a cancel names */
  generationId: string
  /** ask the backend for a preview on each `progress` (SSE requests that want one) */
  preview: boolean
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

/** The cancel path of a generation on the backend (PROTOCOL.md). */
const cancelPath = (generationId: string) =>
  `/v1/generations/${encodeURIComponent(generationId)}/cancel`

/**
 * Relays a cancel of generation `generationId` (the worker's id) of model `modelId` to that model's
 * backends: whichever runs it stops at its next NFE boundary (behind Ray Serve any replica relays it
 * to the right one). Resolves true when a backend had it live, false when none did (finished, never
 * started, unknown); never throws.
 */
export function cancelRemoteGeneration(
  settings: Settings,
  modelId: string,
  generationId: string,
): Promise<boolean> {
  const router = new BackendRouter(
    backendsFor(settings.backends, modelId),
    settings.backendSecret,
    settings.backendTimeoutMs,
  )
  return router.broadcast(cancelPath(generationId))
}

/** A backend answer that breaks the protocol: 502, like an unusable forward output. */
const badOutput = (message: string) =>
  new BackendError(502, 'backend_bad_output', `Inference backend output unusable: ${message}`)

/** Reads one chunk, or fails with a 504 when the backend sent nothing (not even a keepalive) for `idleMs`. */
async function readWithin<T>(
  reader: ReadableStreamDefaultReader<T>,
  idleMs: number,
): Promise<ReadableStreamReadResult<T>> {
  let timer: ReturnType<typeof setTimeout> | null = null
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BackendError(
            504,
            'backend_timeout',
            `Inference backend sent nothing for ${idleMs} ms during a generation`,
          ),
        ),
      idleMs,
    )
  })
  try {
    return await Promise.race([reader.read(), idle])
  } finally {
    if (timer !== null) clearTimeout(timer)
  }
}

/**
 * The non-blank lines of an NDJSON body (blank lines are the backend's keepalives). A line longer
 * than `maxChars` is refused before it is buffered further.
 */
async function* ndjsonLines(
  body: ReadableStream<Uint8Array>,
  options: { maxChars: number; idleMs: number },
): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let parts: string[] = []
  let buffered = 0
  try {
    for (;;) {
      const { value, done } = await readWithin(reader, options.idleMs)
      if (done) break
      let rest = value
      for (let newline = rest.indexOf('\n'); newline >= 0; newline = rest.indexOf('\n')) {
        const line = parts.join('') + rest.slice(0, newline)
        parts = []
        buffered = 0
        rest = rest.slice(newline + 1)
        if (line.trim() !== '') yield line
      }
      parts.push(rest)
      buffered += rest.length
      if (buffered > options.maxChars)
        throw badOutput(`an event line over ${options.maxChars} characters`)
    }
    const last = parts.join('')
    if (last.trim() !== '') yield last
  } finally {
    reader.cancel().catch(() => {})
  }
}

/** Longest event line a request can legitimately produce: one base64 PNG of its size, plus fields. */
function maxLineChars(request: NormalizedRequest): number {
  // An 8-bit RGBA PNG is at most its raw rows (+1 filter byte each) plus zlib's and the chunks' overhead.
  const rawPng = request.size * (request.size * 4 + 1)
  return Math.ceil(((rawPng * 1.01 + 65_536) * 4) / 3) + 16_384
}

/** `(width, height)` from a PNG's IHDR, or undefined when `png` is not a PNG. */
function pngSize(png: Uint8Array): { width: number; height: number } | undefined {
  if (png.byteLength < 24 || PNG_SIGNATURE.some((byte, i) => png[i] !== byte)) return undefined
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength)
  return { width: view.getUint32(16), height: view.getUint32(20) }
}

/** The typed error of a backend's `error` event. */
function errorOfEvent(event: Extract<GenerateEvent, { type: 'error' }>): ApiError {
  const { code, message } = event.error
  const detail = `Inference backend ended the generation with ${code}: ${message}`
  switch (code) {
    case 'timeout':
      // Not started within the backend's queue timeout: it is alive but saturated.
      return new BackendError(503, 'backends_overloaded', detail, { retryAfter: 5 })
    case 'shutting_down':
      return new BackendError(503, 'backends_unavailable', detail, { retryAfter: 5 })
    case 'cancelled':
      return new BackendError(502, 'backend_cancelled', detail)
    default:
      return new BackendError(502, 'backend_failed', detail)
  }
}

/** What one stream has delivered so far, checked against the request event by event. */
interface StreamState {
  plan: RemoteGenerationPlan
  sigmas: number[] | undefined
  queued: boolean
  steps: number
  images: StoredImage[]
  writes: ReturnType<typeof orderedImageWrites>
}

/** Checks an `image` event against the request and its own hash and size; returns the PNG. */
async function checkedPng(
  state: StreamState,
  event: Extract<GenerateEvent, { type: 'image' }>,
): Promise<Uint8Array> {
  const { request } = state.plan
  const index = state.images.length
  if (event.index !== index || event.seed !== (request.seed + index) >>> 0) {
    throw badOutput(`image ${event.index} (seed ${event.seed}) where image ${index} was due`)
  }
  if (event.width !== request.size || event.height !== request.size) {
    throw badOutput(`image of ${event.width}×${event.height}, asked for ${request.size}²`)
  }
  const png = base64ToBytes(event.data)
  const size = pngSize(png)
  if (png.byteLength !== event.bytes || !size)
    throw badOutput(`image ${index} is not the PNG announced`)
  if (size.width !== request.size || size.height !== request.size) {
    throw badOutput(
      `image ${index} is a ${size.width}×${size.height} PNG, asked for ${request.size}²`,
    )
  }
  if ((await sha256Hex(png)) !== event.sha256) throw badOutput(`image ${index} fails its sha256`)
  return png
}

/** Applies one event; returns true on `done` (every step and image arrived). */
async function apply(
  state: StreamState,
  event: GenerateEvent,
  hooks: GenerationHooks,
): Promise<boolean> {
  const { plan } = state
  const { request } = plan
  if (event.id !== plan.generationId) throw badOutput(`an event of generation ${event.id}`)
  if (!state.queued && event.type !== 'queued') throw badOutput(`${event.type} before queued`)
  switch (event.type) {
    case 'queued': {
      const echoed = [event.count, event.nfe, event.width, event.height, event.seed].join(',')
      const asked = [request.count, request.nfe, request.size, request.size, request.seed].join(',')
      if (state.queued || echoed !== asked) throw badOutput(`queued ${echoed}, asked ${asked}`)
      state.queued = true
      return false
    }
    case 'started':
      return false
    case 'progress': {
      if (event.step !== state.steps + 1 || event.nfe !== request.nfe) {
        throw badOutput(`progress ${event.step}/${event.nfe} after step ${state.steps}`)
      }
      state.steps = event.step
      const sigma = state.sigmas?.[event.step - 1]
      const progress: ProgressInfo = {
        step: event.step,
        nfe: event.nfe,
        ...(sigma === undefined ? {} : { sigma }),
        ...(plan.preview && event.preview
          ? { preview: event.preview, previewKind: 'state' as const }
          : {}),
      }
      await hooks.onProgress?.(progress)
      return false
    }
    case 'image': {
      if (state.steps !== request.nfe)
        throw badOutput(`an image after ${state.steps} of ${request.nfe} steps`)
      const png = await checkedPng(state, event)
      const image = storedImage(request, event.index, event.sha256, png.byteLength)
      state.images.push(image)
      state.writes.add(image, png)
      return false
    }
    case 'done':
      if (state.images.length !== request.count) {
        throw badOutput(`done after ${state.images.length} of ${request.count} images`)
      }
      return true
    case 'error':
      throw errorOfEvent(event)
  }
}

/**
 * Runs a whole generation on the model's backend and writes its PNGs to R2, reporting progress and
 * images through `hooks` as they arrive. The outcome's timings put the backend's whole time in
 * `forwardMs` (integration and encoding happened there too).
 */
export async function runRemoteGeneration(
  plan: RemoteGenerationPlan,
  router: BackendRouter,
  bucket: R2Bucket,
  hooks: GenerationHooks,
  signal: AbortSignal | undefined,
): Promise<GenerationOutcome> {
  const { model, request } = plan
  const started = performance.now()
  let opened: Awaited<ReturnType<BackendRouter['open']>>
  try {
    opened = await router.open(
      `/v1/models/${encodeURIComponent(model.id)}/generate`,
      generateRequestBody(request, model.entry, plan.preview),
      {
        contentType: 'application/json',
        headers: { 'X-Request-Id': plan.generationId },
        ...(signal ? { signal } : {}),
      },
    )
  } catch (error) {
    // A refusal of what the edge validated means the backend's model changed: describe it again.
    if (error instanceof BackendError && error.code === 'backend_rejected')
      forgetRemoteModel(model.id)
    throw error
  }
  const { response, backendId } = opened
  // An aborted job also tells the backend by id, for proxies (Ray Serve's) that may not pass a
  // dropped connection on at once; the stream's own abort follows from `signal`.
  let relayed: Promise<boolean> | undefined
  const relay = () => {
    relayed = router.broadcast(cancelPath(plan.generationId))
  }
  signal?.addEventListener('abort', relay, { once: true })
  const state: StreamState = {
    plan,
    sigmas: remoteSigmas(model, request.nfe),
    queued: false,
    steps: 0,
    images: [],
    writes: orderedImageWrites(bucket, hooks.onImage),
  }
  try {
    const body = response.body
    if (!body) throw badOutput('an empty answer')
    const lines = ndjsonLines(body, {
      maxChars: maxLineChars(request),
      idleMs: router.timeoutMs,
    })
    let finished = false
    for await (const line of lines) {
      let event: GenerateEvent
      try {
        event = generateEventSchema.parse(JSON.parse(line))
      } catch (error) {
        throw badOutput(
          `an event that is not in the protocol (${(error as Error).message.slice(0, 200)})`,
        )
      }
      finished = await apply(state, event, hooks)
      if (finished) break
    }
    if (!finished) {
      throw new BackendError(
        502,
        'backend_failed',
        `Inference backend ${backendId} closed the generation stream before it was done`,
      )
    }
  } catch (error) {
    // Images already on their way to R2 land (or fail) before the failure is reported, so no image
    // event follows the job's error.
    await state.writes.stored().catch(() => {})
    if (signal?.aborted) {
      await relayed
      throw signal.reason
    }
    if (error instanceof ApiError) throw error
    // A transport failure mid-stream: the backend died, restarted or dropped the connection.
    throw new BackendError(
      502,
      'backend_failed',
      `Inference backend ${backendId} failed mid-generation: ${(error as Error).message}`,
      { cause: error },
    )
  } finally {
    signal?.removeEventListener('abort', relay)
  }
  return {
    images: state.images,
    backends: [backendId],
    timings: { forwardMs: performance.now() - started, integrateMs: 0, encodeMs: 0 },
    stored: state.writes.stored(),
  }
}
