/**
 * @module records
 * What the Ledger stores per generation and how it becomes the public `Generation` JSON. Images are
 * stored as R2 keys; URLs are signed when rendered, so records never hold expiring data.
 */
import type { GenerationParams } from '@piflow/protocol'
import type { Generation } from './schemas.ts'

/** Per-NFE progress, as SSE `progress` events carry it (and records keep for resumed streams). */
export interface ProgressInfo {
  step: number
  nfe: number
  /** σ at the end of the step (absent for a remote model whose backend declares no schedule) */
  sigma?: number
  /** PNG data URI of image 0's current x0 estimate (GM at the edge) or state (otherwise) */
  preview?: string
  previewKind?: 'x0' | 'state'
}

/** A stored image (R2 key `images/<sha256>.png`: content-addressed, shared by cache hits). */
export interface StoredImage {
  index: number
  seed: number
  key: string
  width: number
  height: number
  sha256: string
  bytes: number
}

/** The normalised request a generation runs (also what the cache key hashes). */
export interface NormalizedRequest extends GenerationParams {
  /** sha256 of the student file serving this nfe, so a model update never hits stale cache */
  modelVersion: string
  format: 'png'
}

export interface GenerationRecord {
  id: string
  requestId: string
  status: Generation['status']
  request: NormalizedRequest
  seeded: boolean
  cached: boolean
  progress: { step: number; nfe: number }
  /**
   * The progress events so far, which resumed SSE streams replay (events.ts). Bounded: one entry per
   * NFE, and only the latest keeps its preview while running (none once finished). Absent on cache
   * hits and on records written before resume existed.
   */
  steps?: ProgressInfo[]
  /** stored as each image lands in R2, so a resumed stream sends it before the generation ends */
  images: StoredImage[]
  integration: Generation['integration']
  backends: string[]
  timings: Generation['timings']
  createdAt: string
  completedAt: string | null
  /**
   * While running: until when (epoch ms) the record is trusted without a renewal by its job
   * (lease.ts); a running record past it was abandoned by a dead job.
   */
  leaseUntil?: number
  /** while queued: its place in the model's queue (1 = next) */
  queuePosition?: number
  /** `status` (and `retryAfter`, seconds) are what the failure is reported and replayed with */
  error: { code: string; message: string; status: number; retryAfter?: number } | null
}

/** A failure caused by the backends (502/503/504), not the caller: its retry should run and cost once. */
export const isTransientFailure = (record: GenerationRecord) => (record.error?.status ?? 0) >= 502

/**
 * The record of a generation canceled at `now`: the decided outcome, written the moment the cancel
 * lands (the job stops at its next NFE boundary and writes its own steps and timings into it). Images
 * stored before the cancel stay; none are added after it.
 */
export function canceledRecord(record: GenerationRecord, now = Date.now()): GenerationRecord {
  const { leaseUntil: _lease, queuePosition: _position, ...rest } = record
  return {
    ...rest,
    status: 'canceled',
    completedAt: new Date(now).toISOString(),
    timings: { ...record.timings, totalMs: now - Date.parse(record.createdAt) },
    error: null,
  }
}

/** The first record of a new generation: running, nothing done yet. */
export function runningRecord(fields: {
  id: string
  requestId: string
  request: NormalizedRequest
  seeded: boolean
  integration: GenerationRecord['integration']
  createdAt: number
}): GenerationRecord {
  const { request } = fields
  return {
    id: fields.id,
    requestId: fields.requestId,
    status: 'running',
    request,
    seeded: fields.seeded,
    cached: false,
    progress: { step: 0, nfe: request.nfe },
    images: [],
    integration: fields.integration,
    backends: [],
    timings: { totalMs: 0, forwardMs: 0, integrateMs: 0, encodeMs: 0 },
    createdAt: new Date(fields.createdAt).toISOString(),
    completedAt: null,
    error: null,
  }
}
