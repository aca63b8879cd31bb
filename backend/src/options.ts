/**
 * @module options
 * Backend options, their defaults (one place) and normalisation.
 */

import { availableParallelism } from 'node:os'

/** How the backend runs; every field but `secret` and `modelsDir` has a default. */
/** What `executionProvider` accepts (the CLI's `--execution-provider` too). */
export const EXECUTION_PROVIDER_CHOICES = ['auto', 'cpu', 'cuda', 'webgpu'] as const

/** The choices as a sentence: "auto, cpu, cuda or webgpu". */
export const EXECUTION_PROVIDER_TEXT = `${EXECUTION_PROVIDER_CHOICES.slice(0, -1).join(', ')} or ${EXECUTION_PROVIDER_CHOICES.at(-1)}`

export interface BackendOptions {
  /** Shared secret the worker sends in `X-Piflow-Backend-Secret`. Required. */
  secret: string
  /** Directory holding one `<id>/manifest.json` per model. */
  modelsDir: string
  /**
   * Single model directories (each holding a `manifest.json`) served besides those in `modelsDir`:
   * a model that lives elsewhere (a new export under test) without copying it in. @default []
   */
  modelDirs?: string[]
  /**
   * `auto` = CUDA when onnxruntime can create a CUDA session here, CPU otherwise; `webgpu` (a GPU
   * through onnxruntime's Dawn, no CUDA libraries) only when asked for. @default 'auto'
   */
  executionProvider?: (typeof EXECUTION_PROVIDER_CHOICES)[number]
  /** Most rows (images) in one onnxruntime run. @default 16 */
  maxBatchSize?: number
  /**
   * Longest a request arriving at an idle model waits for company before its batch runs. While a run
   * is in flight the next batch forms anyway, so this only matters at low load. @default 0
   */
  maxWaitMs?: number
  /** Requests waiting per model beyond which new ones get 503 + Retry-After. @default 64 */
  queueLimit?: number
  /** Deadline per request (queue wait + forward + integration) → 504. @default 30000 */
  requestTimeoutMs?: number
  /** Largest request body. @default 32 MiB */
  maxBodyBytes?: number
  /** onnxruntime intra-op threads (0 = onnxruntime's choice). @default 0 */
  intraOpThreads?: number
  /**
   * Worker threads for step integrations, so large rollouts never block the event loop (0 = all
   * inline; rollouts under INLINE_MAX_WORK run inline anyway).
   * @default cores − 1, between 1 and 4
   */
  integrateThreads?: number
  /**
   * Fault injection for tests and drills: sleep this long before every onnxruntime run, as a slow
   * accelerator would. Never set in production. @default 0
   */
  debugRunDelayMs?: number
  /** Where log lines go (never stdout: stdout carries only the ready line). @default stderr */
  log?: (line: string) => void
}

export type NormalizedBackendOptions = Required<BackendOptions>

/**
 * Defaults, justified (piflow-emoji on this 2-core CPU, 2026-11-25, loaded machine):
 * - maxBatchSize 16: onnxruntime gives 43 rows/s at batch 1, 72 at 16 and 75 at 32; past 16 a run's
 *   latency doubles for +4 % throughput. 16 × (3,32,32) is a 2 MB run output
 *   (GM K=8); at v2's 3×64×64 it is 8.4 MB, each request's share ≤ 2.1 MB (B=4). GPUs may raise it.
 * - maxWaitMs 0 (work-conserving: an idle model never waits): measured 2026-11-26 on an idle machine
 *   with a 2.6 ms forward, 0 ms vs 2 ms gives 201 vs 128 req/s and p50 4.4 vs 6.9 ms at concurrency 1,
 *   and the same throughput at 4 (219 vs 226) and 16 (284 vs 284): under load batches form while the
 *   previous run is in flight (mean batch 2.3 at 4, 8.4 at 16), so a window only taxes a lone request.
 *   A GPU host where batch 8 costs what batch 1 does may still want a small window.
 * - queueLimit 64: four full batches queued (~1 s of work here); past that a client does better to
 *   retry elsewhere than to wait.
 * - requestTimeoutMs 30 s: the worker's own deadline is shorter; this only reaps stuck work.
 * - integrateThreads cores − 1 (1–4): large step rollouts leave the event loop free for parsing and
 *   batching; small ones (the default model's) run inline, where a thread hop would cost more.
 */
export const DEFAULT_OPTIONS = {
  executionProvider: 'auto',
  modelDirs: [] as string[],
  maxBatchSize: 16,
  maxWaitMs: 0,
  queueLimit: 64,
  requestTimeoutMs: 30_000,
  maxBodyBytes: 32 * 1024 * 1024,
  intraOpThreads: 0,
  integrateThreads: Math.max(1, Math.min(4, availableParallelism() - 1)),
  debugRunDelayMs: 0,
  log: (line: string) => process.stderr.write(`${line}\n`),
} as const satisfies Omit<NormalizedBackendOptions, 'secret' | 'modelsDir'>

/** Fills defaults and checks ranges once, at the boundary. */
export function normalizeOptions(options: BackendOptions): NormalizedBackendOptions {
  const merged = { ...DEFAULT_OPTIONS, ...dropUndefined(options) } as NormalizedBackendOptions
  if (typeof merged.secret !== 'string' || merged.secret.length === 0) {
    throw new TypeError('secret is required (--secret or PIFLOW_BACKEND_SECRET)')
  }
  if (!(EXECUTION_PROVIDER_CHOICES as readonly string[]).includes(merged.executionProvider)) {
    throw new TypeError(
      `executionProvider must be ${EXECUTION_PROVIDER_TEXT}, got ${merged.executionProvider}`,
    )
  }
  if (!Array.isArray(merged.modelDirs) || merged.modelDirs.some((d) => typeof d !== 'string')) {
    throw new TypeError('modelDirs must be a list of directories')
  }
  positiveInteger('maxBatchSize', merged.maxBatchSize)
  positiveInteger('queueLimit', merged.queueLimit)
  positiveInteger('requestTimeoutMs', merged.requestTimeoutMs)
  positiveInteger('maxBodyBytes', merged.maxBodyBytes)
  nonNegative('maxWaitMs', merged.maxWaitMs)
  nonNegative('intraOpThreads', merged.intraOpThreads)
  nonNegative('integrateThreads', merged.integrateThreads)
  if (!Number.isInteger(merged.integrateThreads))
    throw new TypeError('integrateThreads must be an integer')
  nonNegative('debugRunDelayMs', merged.debugRunDelayMs)
  return merged
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

function positiveInteger(name: string, value: number) {
  if (!Number.isInteger(value) || value < 1) {
    throw new TypeError(`${name} must be a positive integer, got ${value}`)
  }
}

function nonNegative(name: string, value: number) {
  if (!Number.isFinite(value) || value < 0) {
    throw new TypeError(`${name} must be a non-negative number, got ${value}`)
  }
}
