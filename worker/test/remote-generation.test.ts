/**
 * The whole-generation path (src/remote-generation.ts) inside workerd against a real PyTorch backend
 * process (test/global-setup.ts: the piflux-tiny fixture model on the CPU, 300 ms per NFE): a cancel
 * relayed by the worker's generation id, and an aborted generation cancelling its stream on the backend.
 */
import { env } from 'cloudflare:test'
import { describe, expect, inject, it } from 'vitest'
import { BackendRouter } from '../src/backends.ts'
import { backendsFor, type Env, settings } from '../src/env.ts'
import { BackendError } from '../src/errors.ts'
import type { ProgressInfo } from '../src/records.ts'
import { cancelRemoteGeneration, runRemoteGeneration } from '../src/remote-generation.ts'
import { remoteModel } from '../src/remote-models.ts'
import { backendSecret } from './helpers.ts'

const MODEL = 'piflux-tiny'

function torchSettings() {
  return settings({
    ...(env as unknown as Env),
    PIFLOW_MODELS: MODEL,
    PIFLOW_BACKENDS: JSON.stringify([{ id: 'torch', url: inject('torchUrl'), models: [MODEL] }]),
  })
}

/** The backend's count of cancelled generations (`/readyz` stats). */
async function cancelledOnBackend(): Promise<number> {
  const ready = (await (await fetch(`${inject('torchUrl')}/readyz`)).json()) as {
    stats: { cancelled: number }
  }
  return ready.stats.cancelled
}

async function start(generationId: string, signal?: AbortSignal) {
  const config = torchSettings()
  const model = (await remoteModel(config, MODEL))!
  expect(model.options.nfeOptions).toEqual([4])
  const router = new BackendRouter(backendsFor(config.backends, MODEL), backendSecret(), 30_000)
  const steps: ProgressInfo[] = []
  let firstStep: () => void = () => {}
  const stepped = new Promise<void>((resolve) => {
    firstStep = resolve
  })
  const request = {
    model: MODEL,
    prompt: 'cancel me',
    nfe: 4,
    seed: 3,
    size: 64,
    guidance: 3.5,
    count: 1,
    modelVersion: model.version,
    format: 'png' as const,
  }
  const run = runRemoteGeneration(
    { model, request, generationId, preview: false },
    router,
    env.IMAGES,
    {
      onProgress: (progress) => {
        steps.push(progress)
        firstStep()
      },
    },
    signal,
  )
  run.catch(() => {}) // awaited by the test
  return { config, run, steps, stepped }
}

describe.skipIf(!inject('torchAvailable'))('whole generations on the PyTorch backend', () => {
  it('cancelRemoteGeneration stops a running generation by the worker’s id; unknown ids are false', async () => {
    const id = `gen_cancel_${Date.now()}`
    const { config, run, steps, stepped } = await start(id)
    await stepped
    expect(await cancelRemoteGeneration(config, MODEL, id)).toBe(true)
    const error = await run.catch((e) => e)
    expect(error).toBeInstanceOf(BackendError)
    expect(error).toMatchObject({ status: 502, code: 'backend_cancelled' })
    expect(steps.length).toBeLessThan(4)
    expect(await cancelRemoteGeneration(config, MODEL, id)).toBe(false)
    expect(await cancelRemoteGeneration(config, MODEL, 'gen_never_started')).toBe(false)
  })

  it('an aborted generation rejects with the abort and is cancelled on the backend', async () => {
    const before = await cancelledOnBackend()
    const controller = new AbortController()
    const id = `gen_abort_${Date.now()}`
    const { config, run, steps, stepped } = await start(id, controller.signal)
    await stepped
    controller.abort(new Error('job aborted'))
    await expect(run).rejects.toThrow('job aborted')
    expect(steps.length).toBeLessThan(4)
    // The relayed cancel (or the dropped stream) ended it there: nothing of it is live any more.
    await expect.poll(cancelledOnBackend).toBeGreaterThan(before)
    expect(await cancelRemoteGeneration(config, MODEL, id)).toBe(false)
  })
})
