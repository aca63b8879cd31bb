/**
 * @module lease
 * How a running generation proves its job is alive. The job (jobs.ts) stores its record with a lease
 * and renews it every {@link LEASE_RENEW_MS} while it runs; a record still `running` once its lease has
 * run out belongs to a job that died with its isolate (a worker killed mid-generation), and will never
 * finish. The Ledger then turns it into a failure (`generation_abandoned`) the moment anyone reads it,
 * so `GET /v1/generations/:id`, SSE streams and Idempotency-Key retries all see the same thing within
 * {@link LEASE_MS} of the job's last sign of life, whatever the model's generation time.
 */

/**
 * The parts of a generation record (records.ts) a lease decision reads. Declared here rather than
 * imported, so this module stays free of Workers types (the reliability suites import its constants).
 */
export interface LeasedRecord {
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled'
  createdAt: string
  completedAt: string | null
  leaseUntil?: number
  progress: { step: number; nfe: number }
  timings: { totalMs: number }
  error: { code: string; message: string; status: number } | null
}

/** How long a running record is trusted after its job's last renewal. */
export const LEASE_MS = 20_000
/** How often a live job renews its lease: several renewals fit in one lease, so one slow call is fine. */
export const LEASE_RENEW_MS = 5_000

/** The code a dead job's generation fails with. */
export const ABANDONED_CODE = 'generation_abandoned'

/** When `record`'s lease ends (records written before leases existed: LEASE_MS after creation). */
export function leaseEnd(record: LeasedRecord): number {
  return record.leaseUntil ?? Date.parse(record.createdAt) + LEASE_MS
}

/** True while a generation has not ended: queued for a slot, or running. */
export const isLive = (record: Pick<LeasedRecord, 'status'>) =>
  record.status === 'running' || record.status === 'queued'

/** True when `record` says queued or running but its job stopped renewing the lease: it will never finish. */
export function isAbandoned(record: LeasedRecord, now = Date.now()): boolean {
  return isLive(record) && leaseEnd(record) <= now
}

/** The failed record an abandoned generation becomes. 503: the service failed, a retry may succeed. */
export function abandonedRecord<R extends LeasedRecord>(record: R, now = Date.now()): R {
  return {
    ...record,
    status: 'failed',
    completedAt: new Date(now).toISOString(),
    timings: { ...record.timings, totalMs: now - Date.parse(record.createdAt) },
    error: {
      code: ABANDONED_CODE,
      message: 'The worker running this generation stopped before it finished; retry it',
      status: 503,
    },
  }
}

/**
 * Seconds a client should wait before retrying a request whose Idempotency-Key is still held by
 * `record`: while the job renews its lease, its own estimate of what is left (elapsed time per step ×
 * steps to go); once a renewal is overdue (the job is likely dead), the rest of the lease, after which
 * the key is free again.
 */
export function retryAfterSeconds(record: LeasedRecord | undefined, now = Date.now()): number {
  if (!record) return 1
  const end = leaseEnd(record)
  const lastRenewal = end - LEASE_MS
  if (now - lastRenewal > LEASE_RENEW_MS + 1000) return Math.max(1, Math.ceil((end - now) / 1000))
  const { step, nfe } = record.progress
  const elapsed = now - Date.parse(record.createdAt)
  const remaining = step > 0 ? (elapsed / step) * (nfe - step) : 0
  return Math.max(1, Math.ceil(remaining / 1000))
}
