/**
 * @module integrator-pool
 * Runs step integrations on worker threads so a long rollout (hundreds of milliseconds for a large
 * batch) never blocks the event loop that parses requests and feeds the batcher. Same math as the
 * inline path: each worker runs `createCpuIntegrator()` from `@piflow/policy`.
 */

import { Worker } from 'node:worker_threads'
import {
  createCpuIntegrator,
  type GmOutput,
  type PolicyOutput,
  type SegmentSpec,
  substepCount,
  unwarp,
} from '@piflow/policy'

/**
 * Rollouts smaller than this (mixture values × substeps) run inline: at the default model's size
 * (~0.8 M, ~1.2 ms) the hop to a worker thread — copies, postMessage, wake-up — cost 0.8 ms more
 * than it saved (/step p50 7.1 vs 6.3 ms). Up to this bound the event loop is held for ~3 ms at most.
 */
export const INLINE_MAX_WORK = 2 ** 21

/** Size of a segment's rollout: mixture (or grid) values per state × substeps. */
export function rolloutWork(output: PolicyOutput<Float32Array>, segment: SegmentSpec): number {
  const { batch, channels, height, width } = segment.shape
  const per = output.type === 'gm' ? output.k : output.n
  const substeps = substepCount(
    unwarp(segment.sigmaSrc, segment.shift),
    unwarp(segment.sigmaDst, segment.shift),
    segment.totalSubsteps,
  )
  return batch * per * channels * height * width * substeps
}

export interface IntegrateRequest {
  id: number
  output: PolicyOutput<Float32Array>
  x: Float32Array
  segment: SegmentSpec
}

export type IntegrateReply =
  | { id: number; x: Float32Array; numSubsteps: number }
  | { id: number; error: { message: string; policyCode: string | undefined } }

/** An integration the policy module refused (bad parameters), with its code. */
export class IntegrationError extends Error {
  override name = 'IntegrationError'
  readonly policyCode: string | undefined
  constructor(message: string, policyCode: string | undefined) {
    super(message)
    this.policyCode = policyCode
  }
}

export interface IntegratorPool {
  /** Integrates `x` in place from σ_src to σ_dst; rejects with the signal's reason if it aborts. */
  integrate(
    output: PolicyOutput<Float32Array>,
    x: Float32Array,
    segment: SegmentSpec,
    signal?: AbortSignal,
  ): Promise<{ numSubsteps: number }>
  close(): Promise<void>
}

interface Slot {
  worker: Worker
  busy: number
}

/**
 * `threads` workers (0 = integrate inline on the calling thread, e.g. where workers cannot load TS).
 * Work goes to the least busy worker; rollouts under {@link INLINE_MAX_WORK} run inline.
 */
export function createIntegratorPool(threads: number): IntegratorPool {
  const inline = createCpuIntegrator()
  if (threads === 0) {
    return {
      integrate: (output, x, segment, signal) => inline.integrate(output, x, segment, signal),
      close: async () => {},
    }
  }
  const pending = new Map<
    number,
    { resolve: (r: IntegrateReply) => void; reject: (e: unknown) => void }
  >()
  const slots: Slot[] = Array.from({ length: threads }, () => {
    // Workers inherit the parent's execArgv, so under tsx they load TypeScript the same way.
    const worker = new Worker(new URL('./integrate-worker.ts', import.meta.url))
    worker.unref()
    worker.on('message', (reply: IntegrateReply) => {
      const waiter = pending.get(reply.id)
      pending.delete(reply.id)
      waiter?.resolve(reply)
    })
    worker.on('error', (error) => {
      for (const waiter of pending.values()) waiter.reject(error)
      pending.clear()
    })
    return { worker, busy: 0 }
  })
  let nextId = 0

  return {
    async integrate(output, x, segment, signal) {
      signal?.throwIfAborted()
      // A malformed segment (NaN work) goes to the worker, whose policy module reports it.
      if (rolloutWork(output, segment) < INLINE_MAX_WORK) {
        return inline.integrate(output, x, segment, signal)
      }
      const slot = slots.reduce((a, b) => (b.busy < a.busy ? b : a))
      const id = nextId++
      // Copies: the tensors are views into larger buffers (onnxruntime outputs, request bodies) that
      // cannot be transferred whole.
      const request: IntegrateRequest = { id, output: copyOutput(output), x: x.slice(), segment }
      slot.busy++
      try {
        const reply = await new Promise<IntegrateReply>((resolve, reject) => {
          pending.set(id, { resolve, reject })
          signal?.addEventListener('abort', () => reject(signal.reason), { once: true })
          slot.worker.postMessage(request, transferList(request))
        })
        if ('error' in reply)
          throw new IntegrationError(reply.error.message, reply.error.policyCode)
        x.set(reply.x)
        return { numSubsteps: reply.numSubsteps }
      } finally {
        slot.busy--
        pending.delete(id)
      }
    },
    async close() {
      await Promise.all(slots.map((s) => s.worker.terminate()))
    },
  }
}

function copyOutput(output: PolicyOutput<Float32Array>): PolicyOutput<Float32Array> {
  if (output.type === 'dx') return { ...output, gridU: output.gridU.slice() }
  const gm: GmOutput<Float32Array> = {
    ...output,
    meansU: output.meansU.slice(),
    logweights: output.logweights.slice(),
    logstds: output.logstds.slice(),
  }
  return gm
}

function transferList(request: IntegrateRequest): ArrayBuffer[] {
  const { output, x } = request
  const arrays =
    output.type === 'dx' ? [output.gridU] : [output.meansU, output.logweights, output.logstds]
  return [x, ...arrays].map((a) => a.buffer as ArrayBuffer)
}
