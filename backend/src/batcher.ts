/**
 * @module batcher
 * Dynamic batching: concurrent forwards of the same student file whose inputs agree on every
 * dimension but the batch are concatenated into one onnxruntime run, then split again.
 *
 * One lane per session runs one batch at a time. A batch starts when it is full (`maxBatchSize` rows)
 * or its oldest request has waited `maxWaitMs`; while a run is in flight the next batch forms, so
 * under load batches fill without any extra waiting. Each lane's queue is bounded (503 + Retry-After
 * beyond it); a request whose signal aborts (client gone, deadline) is dropped from the queue and never
 * run.
 */

import type { OutputTensor } from '@piflow/protocol'
import * as ort from 'onnxruntime-node'
import { BackendError, QueueFullError } from './errors.ts'

/** A batch-first input tensor of one request. */
export interface FeedTensor {
  type: 'float32' | 'int64'
  dims: number[]
  data: Float32Array | BigInt64Array
}

export interface ForwardResult {
  outputs: Record<string, OutputTensor>
  /** Rows in the onnxruntime run this request was part of. */
  batchSize: number
  /** Requests in that run. */
  batchRequests: number
  queueMs: number
  runMs: number
}

export interface BatcherOptions {
  maxBatchSize: number
  maxWaitMs: number
  queueLimit: number
  debugRunDelayMs: number
  log: (line: string) => void
}

/** Counters exposed in /readyz (tests and operators read batching from here). */
export interface BatcherStats {
  requests: number
  runs: number
  rowsRun: number
  largestBatch: number
  queued: number
  rejectedQueueFull: number
  cancelled: number
  timedOut: number
  failed: number
}

interface Job {
  feeds: Record<string, FeedTensor>
  rows: number
  signature: string
  enqueuedAt: number
  signal: AbortSignal
  settled: boolean
  resolve: (result: ForwardResult) => void
  reject: (error: unknown) => void
  onAbort: () => void
}

interface Lane {
  name: string
  session: ort.InferenceSession
  outputNames: readonly string[]
  queue: Job[]
  running: boolean
  timer: NodeJS.Timeout | undefined
  /** Moving average of run time, for Retry-After. */
  avgRunMs: number
}

/** The batching engine shared by all models. */
export interface Batcher {
  /**
   * Queues one request's feeds (all batch-first, same batch size) for `session`. Resolves with its
   * slice of the outputs. Rejects with QueueFullError, or with the signal's reason when it aborts first.
   */
  forward(
    laneName: string,
    session: ort.InferenceSession,
    feeds: Record<string, FeedTensor>,
    signal: AbortSignal,
  ): Promise<ForwardResult>
  stats(): BatcherStats
}

export function createBatcher(options: BatcherOptions): Batcher {
  const lanes = new Map<string, Lane>()
  const counters = {
    requests: 0,
    runs: 0,
    rowsRun: 0,
    largestBatch: 0,
    rejectedQueueFull: 0,
    cancelled: 0,
    timedOut: 0,
    failed: 0,
  }

  function schedule(lane: Lane) {
    if (lane.running || lane.queue.length === 0) return
    clearTimeout(lane.timer)
    lane.timer = undefined
    const head = lane.queue[0] as Job
    const batch = takeCompatible(lane.queue, head, options.maxBatchSize, false)
    const rows = batch.reduce((n, j) => n + j.rows, 0)
    const waited = performance.now() - head.enqueuedAt
    if (rows < options.maxBatchSize && waited < options.maxWaitMs) {
      lane.timer = setTimeout(() => schedule(lane), options.maxWaitMs - waited)
      return
    }
    takeCompatible(lane.queue, head, options.maxBatchSize, true)
    lane.running = true
    void run(lane, batch).finally(() => {
      lane.running = false
      schedule(lane)
    })
  }

  async function run(lane: Lane, jobs: Job[]) {
    const started = performance.now()
    // Jobs keep their abort listener while running: a caller that leaves gets its answer at once and
    // the run's result for it is discarded (onnxruntime cannot stop a run midway).
    const live = jobs.filter((j) => !j.settled)
    if (live.length === 0) return
    try {
      if (options.debugRunDelayMs > 0) await sleep(options.debugRunDelayMs)
      const outputs = await runSession(lane, live)
      const runMs = performance.now() - started
      lane.avgRunMs = lane.avgRunMs === 0 ? runMs : 0.8 * lane.avgRunMs + 0.2 * runMs
      const rows = live.reduce((n, j) => n + j.rows, 0)
      counters.runs++
      counters.rowsRun += rows
      counters.largestBatch = Math.max(counters.largestBatch, rows)
      let offset = 0
      for (const job of live) {
        const sliced = sliceRows(outputs, offset, job.rows)
        offset += job.rows
        settle(job, () =>
          job.resolve({
            outputs: sliced,
            batchSize: rows,
            batchRequests: live.length,
            queueMs: started - job.enqueuedAt,
            runMs,
          }),
        )
      }
    } catch (error) {
      if (live.length > 1) {
        // One bad request must not fail its batch-mates: run each alone to isolate it.
        options.log(`piflow-backend: batched run of ${live.length} failed, retrying one by one`)
        for (const job of live) await run(lane, [job])
        return
      }
      counters.failed++
      const message = error instanceof Error ? error.message.split('\n')[0] : String(error)
      for (const job of live) {
        settle(job, () =>
          job.reject(
            new BackendError(500, 'inference_failed', `onnxruntime run failed: ${message}`),
          ),
        )
      }
    }
  }

  function settle(job: Job, fn: () => void) {
    if (job.settled) return
    job.settled = true
    job.signal.removeEventListener('abort', job.onAbort)
    fn()
  }

  function settleAborted(job: Job) {
    settle(job, () => {
      countAbort(job.signal)
      job.reject(job.signal.reason)
    })
  }

  function countAbort(signal: AbortSignal) {
    if (signal.reason instanceof BackendError && signal.reason.code === 'timeout')
      counters.timedOut++
    else counters.cancelled++
  }

  return {
    forward(laneName, session, feeds, signal) {
      counters.requests++
      signal.throwIfAborted()
      let lane = lanes.get(laneName)
      if (lane === undefined) {
        lane = {
          name: laneName,
          session,
          outputNames: session.outputNames,
          queue: [],
          running: false,
          timer: undefined,
          avgRunMs: 0,
        }
        lanes.set(laneName, lane)
      }
      const currentLane = lane
      if (currentLane.queue.length >= options.queueLimit) {
        counters.rejectedQueueFull++
        const queuedRows = currentLane.queue.reduce((n, j) => n + j.rows, 0)
        const drainMs =
          (Math.ceil(queuedRows / options.maxBatchSize) + 1) * Math.max(currentLane.avgRunMs, 1)
        throw new QueueFullError(
          laneName.split('/')[0] ?? laneName,
          Math.max(1, Math.ceil(drainMs / 1000)),
        )
      }
      const first = Object.values(feeds)[0]
      const rows = first?.dims[0] ?? 0
      return new Promise<ForwardResult>((resolve, reject) => {
        const job: Job = {
          feeds,
          rows,
          signature: signatureOf(feeds),
          enqueuedAt: performance.now(),
          signal,
          settled: false,
          resolve,
          reject,
          onAbort: () => {
            const index = currentLane.queue.indexOf(job)
            if (index >= 0) currentLane.queue.splice(index, 1)
            settleAborted(job)
          },
        }
        signal.addEventListener('abort', job.onAbort, { once: true })
        currentLane.queue.push(job)
        schedule(currentLane)
      })
    },

    stats() {
      const queued = [...lanes.values()].reduce((n, l) => n + l.queue.length, 0)
      return { ...counters, queued }
    },
  }
}

/** Jobs batchable with `head` (same non-batch dims), in queue order, up to `maxRows` rows. */
function takeCompatible(queue: Job[], head: Job, maxRows: number, remove: boolean): Job[] {
  const taken: Job[] = []
  let rows = 0
  for (let i = 0; i < queue.length; ) {
    const job = queue[i] as Job
    if (job.signature === head.signature && rows + job.rows <= maxRows) {
      taken.push(job)
      rows += job.rows
      if (remove) {
        queue.splice(i, 1)
        continue
      }
    }
    i++
  }
  return taken
}

/** Names, dtypes and every dimension but the first: requests with equal signatures can be stacked. */
function signatureOf(feeds: Record<string, FeedTensor>): string {
  return Object.keys(feeds)
    .sort()
    .map((name) => {
      const t = feeds[name] as FeedTensor
      return `${name}:${t.type}:${t.dims.slice(1).join('x')}`
    })
    .join('|')
}

async function runSession(lane: Lane, jobs: Job[]): Promise<Record<string, OutputTensor>> {
  const first = jobs[0] as Job
  const rows = jobs.reduce((n, j) => n + j.rows, 0)
  const feeds: Record<string, ort.Tensor> = {}
  for (const [name, tensor] of Object.entries(first.feeds)) {
    const dims = [rows, ...tensor.dims.slice(1)]
    if (jobs.length === 1) {
      feeds[name] = new ort.Tensor(tensor.type, tensor.data, dims)
      continue
    }
    const rowSize = tensor.data.length / Math.max(tensor.dims[0] ?? 1, 1)
    const data =
      tensor.type === 'float32'
        ? new Float32Array(rows * rowSize)
        : new BigInt64Array(rows * rowSize)
    let offset = 0
    for (const job of jobs) {
      const part = job.feeds[name] as FeedTensor
      ;(data as Float32Array).set(part.data as Float32Array, offset)
      offset += part.data.length
    }
    feeds[name] = new ort.Tensor(tensor.type, data, dims)
  }
  const results = await lane.session.run(feeds)
  const outputs: Record<string, OutputTensor> = {}
  for (const name of lane.outputNames) {
    const tensor = results[name]
    if (tensor === undefined || tensor.type !== 'float32' || tensor.dims[0] !== rows) {
      throw new Error(`output "${name}" missing or not float32 with batch ${rows}`)
    }
    outputs[name] = { dims: [...tensor.dims], data: tensor.data as Float32Array }
  }
  return outputs
}

function sliceRows(
  outputs: Record<string, OutputTensor>,
  start: number,
  rows: number,
): Record<string, OutputTensor> {
  const out: Record<string, OutputTensor> = {}
  for (const [name, tensor] of Object.entries(outputs)) {
    const rowSize = tensor.data.length / (tensor.dims[0] as number)
    out[name] = {
      dims: [rows, ...tensor.dims.slice(1)],
      data: tensor.data.subarray(start * rowSize, (start + rows) * rowSize),
    }
  }
  return out
}

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
