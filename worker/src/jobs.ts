/**
 * @module jobs
 * A running generation, decoupled from the response that started it: it records its state in the
 * tenant's Ledger, fans its events out to whoever listens (an SSE stream) and keeps going when that
 * listener disconnects (the caller registers `done` with `waitUntil`), so `GET /v1/generations/:id`
 * always has the result. A cancel (`POST /v1/generations/:id/cancel`, on any isolate) is written to
 * the Ledger, which wakes the job's {@link Ledger.waitForCancel} call: the job aborts its step loop at
 * the next NFE boundary (its backend call is aborted and the backend told to stop) and ends `canceled`.
 */
import type { BackendRouter } from './backends.ts'
import { storeResult } from './cache.ts'
import { ADMISSION_WAIT_MAX_MS, type Admission, type AdmissionState } from './durable/admission.ts'
import { type Ledger, WATCH_MAX_MS } from './durable/ledger.ts'
import { ApiError } from './errors.ts'
import { withoutPreview } from './events.ts'
import { type GenerationHooks, type GenerationPlan, runGeneration } from './generate.ts'
import { LEASE_MS, LEASE_RENEW_MS } from './lease.ts'
import {
  canceledRecord,
  type GenerationRecord,
  isTransientFailure,
  type ProgressInfo,
  type StoredImage,
} from './records.ts'
import { sendWebhook, type WebhookTarget } from './webhooks.ts'

/** What a job reports while it runs. */
export type JobEvent =
  | { type: 'queued'; position: number }
  | { type: 'progress'; progress: ProgressInfo }
  | { type: 'image'; image: StoredImage; png: Uint8Array }

export interface JobOptions {
  plan: GenerationPlan
  record: GenerationRecord
  router: BackendRouter
  bucket: R2Bucket
  ledger: DurableObjectStub<Ledger>
  /** set for seeded requests: where the result is cached */
  cacheHash?: string
  /**
   * The model's admission slot (durable/admission.ts), when the backends' capacity is bounded: the job
   * renews it with its lease and frees it when it ends; `position` is set when it starts queued.
   */
  admission?: { slots: DurableObjectStub<Admission>; position?: number }
  /** set when the request asked for webhooks: where they go, and how the final record is rendered */
  webhook?: { target: WebhookTarget; render: (record: GenerationRecord) => Promise<unknown> }
  /** set when the request carried an Idempotency-Key */
  idempotencyKey?: string
  /**
   * gives the request's quota back: all of it when the generation fails for backend reasons (≥ 502),
   * the images not produced when it is canceled
   */
  refundQuota?: (units?: number) => Promise<void>
  /**
   * Record each step and image in the Ledger as it happens (for `GET` progress and SSE resumes of
   * the running generation). Streamed requests only: a JSON caller sees nothing until the end, and
   * these writes cost a Durable Object call each (~2 ms of worker time per call locally, and billed).
   * The final record carries every step either way.
   */
  recordProgress: boolean
}

export class GenerationJob {
  /**
   * The running record is stored: a GET finds the generation from here on. Not awaited before the
   * generation starts (a Durable Object round trip saved); the SSE `id` event waits for it.
   */
  readonly stored: Promise<void>
  /** The final record is stored (and the Idempotency-Key settled): what a response waits for. */
  readonly done: Promise<GenerationRecord>
  readonly #events: JobEvent[] = []
  readonly #listeners = new Set<(event: JobEvent) => void>()
  /** Ledger writes issued while running (the first record, progress patches). */
  readonly #pending: Promise<unknown>[] = []
  #finalIssued = false
  /**
   * `done`, then the result's cache entry: what `waitUntil` must keep alive. The cache entry is an
   * optimisation, so the response does not wait for its writes.
   */
  readonly settled: Promise<unknown>
  /** The encoded PNGs by image index, so a response with inline images needs no R2 read. */
  readonly pngs = new Map<number, Uint8Array>()
  #cacheWrite: Promise<unknown> = Promise.resolve()
  /** Milliseconds from the images being encoded to the last write stored (the durability cost). */
  storeMs = 0
  /** Renews the record's lease while the job runs (lease.ts); cleared when the final record is issued. */
  readonly #leaseTimer: ReturnType<typeof setInterval>
  /** Aborted when the generation is canceled: stops the step loop and its backend call. */
  readonly #cancel = new AbortController()

  constructor(options: JobOptions) {
    const record = { ...options.record, leaseUntil: Date.now() + LEASE_MS }
    // Issued first on this stub, so each later write of the job lands after it (calls on one stub
    // arrive in order); a failure surfaces through `done`, whose final put would fail alike.
    this.stored = options.ledger.putGeneration(record)
    this.stored.catch((error) => console.error('storing the running generation failed', error))
    this.#pending.push(this.stored)
    this.#leaseTimer = setInterval(() => this.#renewLease(options), LEASE_RENEW_MS)
    this.done = this.#run({ ...options, record })
    const watching = this.#watchForCancel(options)
    this.settled = Promise.all([this.done.then(() => this.#cacheWrite), watching])
  }

  /**
   * Waits on the Ledger for a cancel while the job runs (one long call at a time, so a cancel landing
   * on any isolate reaches this one at once) and aborts the run when it comes.
   */
  async #watchForCancel(options: JobOptions): Promise<void> {
    const { ledger, record, router } = options
    while (!this.#finalIssued) {
      let canceled: boolean
      try {
        canceled = await ledger.waitForCancel(record.id, WATCH_MAX_MS)
      } catch (error) {
        // A failed watch must not spin; the lease renewal keeps running meanwhile.
        console.error('watching for a cancel failed', error)
        await new Promise((resolve) => setTimeout(resolve, LEASE_RENEW_MS))
        continue
      }
      if (canceled && !this.#finalIssued) {
        this.#cancel.abort(new DOMException('The generation was canceled', 'AbortError'))
        await router.cancel()
        return
      }
    }
  }

  /** A missed renewal is harmless (the lease outlasts several); a dead job renews nothing. */
  #renewLease(options: JobOptions): void {
    const until = Date.now() + LEASE_MS
    options.ledger
      .renewLease(options.record.id, until)
      .catch((error) => console.error('renewing the generation lease failed', error))
    options.admission?.slots
      .renew(options.record.id, until)
      .catch((error) => console.error('renewing the admission slot failed', error))
  }

  /** Stores a webhook event for delivery (durable/webhook-outbox.ts) before the final record is. */
  #webhook(options: JobOptions, event: 'start' | 'progress', data: unknown, step?: number): void {
    if (!options.webhook) return
    const sent = sendWebhook(options.webhook.target, options.record.id, event, data, step)
    sent.catch((error) => console.error(`storing the ${event} webhook failed`, error))
    this.#pending.push(sent)
  }

  /**
   * Waits in the model's queue until the job's slot runs, reporting each new position (SSE `queued`,
   * and the record for GET); a cancel meanwhile aborts the wait. Then the record says `running`.
   */
  async #waitForSlot(options: JobOptions): Promise<void> {
    const { admission, ledger, record } = options
    if (!admission || admission.position === undefined) return
    let position: number = admission.position
    const signal = this.#cancel.signal
    const canceled = new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true })
    })
    canceled.catch(() => {})
    for (;;) {
      signal.throwIfAborted()
      const state: AdmissionState = await Promise.race([
        admission.slots.wait(record.id, position, ADMISSION_WAIT_MAX_MS),
        canceled,
      ])
      if (state.kind === 'admitted') break
      if (state.position !== position) {
        position = state.position
        this.#emit({ type: 'queued', position })
        this.#pending.push(ledger.patchGeneration(record.id, { queuePosition: position }))
      }
    }
    this.#pending.push(ledger.patchGeneration(record.id, { status: 'running' }))
  }

  /** Receives past events at once, then live ones; returns the unsubscribe function. */
  subscribe(listener: (event: JobEvent) => void): () => void {
    for (const event of this.#events) listener(event)
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #emit(event: JobEvent): void {
    this.#events.push(event)
    for (const listener of this.#listeners) listener(event)
  }

  async #run(options: JobOptions): Promise<GenerationRecord> {
    const { record, ledger } = options
    const started = Date.now()
    const pending = this.#pending
    const steps: ProgressInfo[] = []
    const images: StoredImage[] = []
    let next: GenerationRecord
    try {
      const hooks: GenerationHooks = {
        onProgress: (progress) => {
          steps.push(progress)
          this.#emit({ type: 'progress', progress })
          this.#webhook(
            options,
            'progress',
            { id: record.id, ...withoutPreview(progress) },
            progress.step,
          )
          if (!options.recordProgress) return
          // Calls on one stub arrive in order, so the final put below lands after these patches.
          // Resumed streams (GET with Last-Event-ID) replay `steps`; only the latest preview is kept.
          pending.push(
            ledger.patchGeneration(record.id, {
              progress: { step: progress.step, nfe: progress.nfe },
              steps: steps.map((step) => (step === progress ? step : withoutPreview(step))),
            }),
          )
        },
        onImage: (image, png) => {
          images.push(image)
          this.pngs.set(image.index, png)
          this.#emit({ type: 'image', image, png })
          // Once the final record is issued it carries every image; a patch after it would undo that.
          if (options.recordProgress && !this.#finalIssued) {
            pending.push(ledger.patchGeneration(record.id, { images: [...images] }))
          }
        },
      }
      await this.#waitForSlot(options)
      this.#webhook(options, 'start', { id: record.id, status: 'running' })
      const signal = this.#cancel.signal
      const outcome = await runGeneration(
        options.plan,
        options.router,
        options.bucket,
        hooks,
        signal,
      )
      next = {
        ...record,
        steps: steps.map(withoutPreview),
        status: 'succeeded',
        progress: { step: record.request.nfe, nfe: record.request.nfe },
        images: outcome.images,
        backends: outcome.backends,
        timings: { totalMs: Date.now() - started, ...outcome.timings },
        completedAt: new Date().toISOString(),
      }
      // The final record is written while the PNGs are: the response waits for one storage round
      // trip, not two in a row. A reader racing the response may see the record a moment before its
      // PNG lands; a failed PNG write turns the record into a failure below. The cache entry follows
      // the PNGs, so a cache hit never points at a missing image; nobody waits for it (`settled`).
      const storeStarted = Date.now()
      const finished = this.#finish(options, next)
      const cacheHash = options.cacheHash
      if (cacheHash) {
        const result = {
          images: outcome.images,
          integration: record.integration,
          backends: outcome.backends,
        }
        // Only a result that stayed succeeded is cached: a cancel decided meanwhile wins (Ledger).
        this.#cacheWrite = Promise.all([outcome.stored, finished])
          .then(
            ([, final]) =>
              final.status === 'succeeded' ? storeResult(cacheHash, result, options.bucket) : null,
            () => undefined, // no PNGs, no cache entry; `done` reports the failure
          )
          // An optimisation only: a lost cache entry costs a generation, never a wrong answer.
          .catch((error) => console.error('caching the result failed', error))
      }
      const [, final] = await Promise.all([outcome.stored, finished])
      this.storeMs = Date.now() - storeStarted
      return final
    } catch (error) {
      if (this.#cancel.signal.aborted) {
        const canceled = canceledRecord({ ...record, steps: steps.map(withoutPreview) })
        return this.#finish(options, { ...canceled, progress: progressOf(steps, record) })
      }
      const apiError =
        error instanceof ApiError
          ? error
          : new ApiError(500, 'generation_failed', `Generation failed: ${(error as Error).message}`)
      if (!(error instanceof ApiError)) console.error('generation failed', error)
      next = {
        ...record,
        steps: steps.map(withoutPreview),
        status: 'failed',
        timings: { ...record.timings, totalMs: Date.now() - started },
        completedAt: new Date().toISOString(),
        error: {
          code: apiError.code,
          message: apiError.message,
          status: apiError.status,
          ...(apiError.headers['Retry-After']
            ? { retryAfter: Number(apiError.headers['Retry-After']) }
            : {}),
        },
      }
    }
    return this.#finish(options, next)
  }

  /**
   * Stores the final record after every pending patch (calls on one stub arrive in order) and settles
   * the Idempotency-Key in the same Ledger call (a transient backend failure releases it so the
   * client's retry runs again); returns the stored record, `canceled` if a cancel won. Gives the quota
   * back: all of it after a transient failure, the images not produced after a cancel.
   */
  async #finish(options: JobOptions, next: GenerationRecord): Promise<GenerationRecord> {
    this.#finalIssued = true
    clearInterval(this.#leaseTimer)
    const stored = options.ledger.finishGeneration(next, options.idempotencyKey)
    const released = options.admission?.slots
      .release(next.id)
      .catch((error) => console.error('releasing the admission slot failed', error))
    const [final] = await Promise.all([stored, Promise.allSettled(this.#pending), released])
    if (options.webhook) {
      // Stored before the response goes out: `completed` is delivered at least once, whatever happens next.
      const { target, render } = options.webhook
      await render(final)
        .then((data) => sendWebhook(target, final.id, 'completed', data))
        .catch((error) => console.error('storing the completed webhook failed', error))
    }
    const refund = isTransientFailure(final)
      ? final.request.count
      : final.status === 'canceled'
        ? final.request.count - final.images.length
        : 0
    if (refund > 0 && options.refundQuota) {
      await options
        .refundQuota(refund)
        .catch((error) => console.error('refunding the quota failed', error))
    }
    return final
  }
}

/** Where a stopped job got to: its last step (0 before the first). */
function progressOf(steps: ProgressInfo[], record: GenerationRecord): GenerationRecord['progress'] {
  return { step: steps.at(-1)?.step ?? 0, nfe: record.request.nfe }
}

/**
 * Starts the job of a new generation. Until the job owns the Idempotency-Key, a failure releases the
 * key rather than leaving it "running". The job outlives the response: `waitUntil` keeps it alive, so
 * a client that drops the stream can still GET the result.
 */
export async function startGeneration(
  options: JobOptions,
  waitUntil: (work: Promise<unknown>) => void,
): Promise<GenerationJob> {
  let job: GenerationJob
  try {
    // The job stores its running record itself, without holding up its first backend call.
    job = new GenerationJob(options)
  } catch (error) {
    if (options.idempotencyKey !== undefined) {
      await options.ledger.finishIdempotent(options.idempotencyKey, 'release')
    }
    throw error
  }
  waitUntil(job.settled)
  return job
}
