/**
 * @module jobs
 * A running generation, decoupled from the response that started it: it records its state in the
 * tenant's Ledger, fans its events out to whoever listens (an SSE stream) and keeps going when that
 * listener disconnects (the caller registers `done` with `waitUntil`), so `GET /v1/generations/:id`
 * always has the result.
 */
import type { BackendRouter } from './backends.ts'
import { type CachedResult, storeResult } from './cache.ts'
import type { Ledger } from './durable/ledger.ts'
import { ApiError } from './errors.ts'
import { withoutPreview } from './events.ts'
import type { ProgressInfo } from './generate.ts'
import { type GenerationPlan, runGeneration } from './generate.ts'
import type { GenerationRecord, StoredImage } from './records.ts'

/** What a job reports while it runs. */
export type JobEvent =
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
  /** set when the request carried an Idempotency-Key */
  idempotencyKey?: string
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

  constructor(options: JobOptions) {
    // Issued first on this stub, so each later write of the job lands after it (calls on one stub
    // arrive in order); a failure surfaces through `done`, whose final put would fail alike.
    this.stored = options.ledger.putGeneration(options.record)
    this.stored.catch((error) => console.error('storing the running generation failed', error))
    this.done = this.#run(options)
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
    const pending: Promise<unknown>[] = [this.stored]
    const steps: ProgressInfo[] = []
    const images: StoredImage[] = []
    let next: GenerationRecord
    try {
      const outcome = await runGeneration(options.plan, options.router, options.bucket, {
        onProgress: (progress) => {
          steps.push(progress)
          this.#emit({ type: 'progress', progress })
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
          this.#emit({ type: 'image', image, png })
          if (options.recordProgress) {
            pending.push(ledger.patchGeneration(record.id, { images: [...images] }))
          }
        },
      })
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
      if (options.cacheHash) {
        const cached: CachedResult = {
          images: outcome.images,
          integration: record.integration,
          backends: outcome.backends,
        }
        // Caching is an optimisation: a failed write must not fail a finished generation.
        await storeResult(options.cacheHash, cached, options.bucket).catch((error) =>
          console.error('caching the result failed', error),
        )
      }
    } catch (error) {
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
    // Issued together: arrival order on the stub keeps patches → final record → key in this order,
    // so the response waits for one round trip instead of one per write.
    const writes: Promise<unknown>[] = [ledger.putGeneration(next)]
    if (options.idempotencyKey) {
      // A transient backend failure releases the key so the client's retry actually runs again.
      const transient = (next.error?.status ?? 0) >= 502
      writes.push(ledger.finishIdempotent(options.idempotencyKey, transient ? 'release' : 'keep'))
    }
    await Promise.all([Promise.allSettled(pending), ...writes])
    return next
  }
}
