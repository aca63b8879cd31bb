/**
 * @module integrate-worker
 * Worker-thread body of the integrator pool: runs the shared CPU integrator from `@piflow/policy` on
 * tensors transferred from the main thread and transfers the new state back.
 */

import { parentPort } from 'node:worker_threads'
import { createCpuIntegrator, isPolicyError } from '@piflow/policy'
import type { IntegrateReply, IntegrateRequest } from './integrator-pool.ts'

const integrator = createCpuIntegrator()
const port = parentPort
if (port === null) throw new Error('integrate-worker must run in a worker thread')

port.on('message', async (request: IntegrateRequest) => {
  let reply: IntegrateReply
  try {
    const { numSubsteps } = await integrator.integrate(request.output, request.x, request.segment)
    reply = { id: request.id, x: request.x, numSubsteps }
  } catch (error) {
    const e = error as Error
    reply = {
      id: request.id,
      error: { message: e.message, policyCode: isPolicyError(e) ? e.code : undefined },
    }
  }
  port.postMessage(reply, 'x' in reply ? [reply.x.buffer as ArrayBuffer] : [])
})
