import { cp, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeSafetensors, encodeSafetensors } from '@piflow/protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BackendService, MODELS_DIR, startBackend } from '../../scripts/local-stack.ts'
import type { BatcherStats as Stats } from '../src/batcher.ts'
import { INLINE_MAX_WORK, rolloutWork } from '../src/integrator-pool.ts'
import { forward, inputs, MODEL } from './requests.ts'

// The backend as a real process over HTTP: real onnxruntime, the shipped default model.

async function stats(backend: BackendService): Promise<Stats> {
  const response = await fetch(`${backend.url}/readyz`)
  return ((await response.json()) as { stats: Stats }).stats
}

async function errorCode(response: Response): Promise<string> {
  const body = (await response.json()) as { error: { code: string }; requestId: string }
  expect(typeof body.requestId).toBe('string')
  return body.error.code
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('backend process', () => {
  let backend: BackendService
  beforeAll(async () => {
    backend = await startBackend()
  })
  afterAll(async () => {
    await backend?.stop()
  })

  it('prints exactly one stdout line, listens on a free port, reports its execution provider', async () => {
    expect(backend.stdout()).toMatch(/^piflow-backend listening on http:\/\/127\.0\.0\.1:\d+\n$/)
    expect(Number(new URL(backend.url).port)).toBeGreaterThan(0)
    const ready = (await (await fetch(`${backend.url}/readyz`)).json()) as Record<string, unknown>
    expect(['cpu', 'cuda']).toContain(ready.executionProvider)
    expect(backend.stderr()).toContain(`execution provider ${ready.executionProvider}`)
    const models = (await (
      await fetch(`${backend.url}/v1/models`, {
        headers: { 'X-Piflow-Backend-Secret': backend.secret },
      })
    ).json()) as { executionProvider: string }
    expect(models.executionProvider).toBe(ready.executionProvider)
  })

  it('answers forwards with the headers of the protocol', async () => {
    const response = await forward(backend, encodeSafetensors(inputs(1)), {
      headers: { 'X-Request-Id': 'test-req-1' },
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('x-request-id')).toBe('test-req-1')
    expect(response.headers.get('x-piflow-batch-size')).toBe('1')
    expect(response.headers.get('server-timing')).toMatch(/forward;dur=/)
  })

  it('integrates steps identically on worker threads and inline', async () => {
    // Batch 3 over σ 0.9 → 0.3 is above the inline bound, so the default backend uses its thread.
    const segment = {
      shape: { batch: 3, channels: 3, height: 32, width: 32 },
      sigmaSrc: 0.9,
      sigmaDst: 0.3,
      shift: 3.2,
      totalSubsteps: 128,
      eps: 1e-4,
      temperature: 0.3,
    }
    const gm = { type: 'gm', k: 8 } as Parameters<typeof rolloutWork>[0]
    expect(rolloutWork(gm, segment)).toBeGreaterThan(INLINE_MAX_WORK)
    expect(rolloutWork(gm, { ...segment, shape: { ...segment.shape, batch: 1 } })).toBeLessThan(
      INLINE_MAX_WORK,
    )
    const inline = await startBackend({ args: ['--integrate-threads', '0'] })
    try {
      const body = encodeSafetensors(inputs(3, 2, 0.9), {
        sigma_dst: '0.3',
        shift: '3.2',
        total_substeps: '128',
        temperature: '0.3',
        eps: '0.0001',
      })
      const results = await Promise.all(
        [backend, inline].map(async (b) => {
          const response = await fetch(`${b.url}/v1/models/${MODEL}/step`, {
            method: 'POST',
            headers: { 'X-Piflow-Backend-Secret': b.secret },
            body: body as Uint8Array<ArrayBuffer>,
          })
          expect(response.status).toBe(200)
          expect(response.headers.get('server-timing')).toMatch(/integrate;dur=/)
          return decodeSafetensors(new Uint8Array(await response.arrayBuffer()))
        }),
      )
      expect(results[0]?.metadata).toEqual(results[1]?.metadata)
      expect(results[0]?.tensors.x?.data).toEqual(results[1]?.tensors.x?.data)
    } finally {
      await inline.stop()
    }
  })

  it('refuses a non-safetensors content type with 415', async () => {
    const response = await forward(backend, encodeSafetensors(inputs(1)), {
      headers: { 'Content-Type': 'application/json' },
    })
    expect(response.status).toBe(415)
    expect(await errorCode(response)).toBe('unsupported_media_type')
  })
})

describe('dynamic batching', () => {
  let backend: BackendService
  beforeAll(async () => {
    // A wide window so four concurrent requests surely meet, whatever the machine's load.
    backend = await startBackend({ args: ['--max-wait-ms', '400', '--max-batch-size', '8'] })
  })
  afterAll(async () => {
    await backend?.stop()
  })

  it('coalesces concurrent forwards into one run, with the same results as solo runs', async () => {
    const before = await stats(backend)
    const bodies = [1, 2, 3, 4].map((seed) => encodeSafetensors(inputs(seed)))
    const responses = await Promise.all(bodies.map((body) => forward(backend, body)))
    const batched = await Promise.all(
      responses.map(async (r) => {
        expect(r.status).toBe(200)
        expect(r.headers.get('x-piflow-batch-size')).toBe('4')
        return decodeSafetensors(new Uint8Array(await r.arrayBuffer()))
      }),
    )
    const after = await stats(backend)
    expect(after.runs - before.runs).toBe(1)
    expect(after.rowsRun - before.rowsRun).toBe(4)
    expect(after.largestBatch).toBe(4)

    // Row i of the batched run equals request i run alone.
    for (let i = 0; i < 4; i++) {
      const solo = await forward(backend, bodies[i] as Uint8Array)
      expect(solo.headers.get('x-piflow-batch-size')).toBe('1')
      const { tensors } = decodeSafetensors(new Uint8Array(await solo.arrayBuffer()))
      for (const name of ['means_u', 'logweights', 'logstds']) {
        const got = batched[i]?.tensors[name]?.data as Float32Array
        const want = tensors[name]?.data as Float32Array
        expect(got.length).toBe(want.length)
        let worst = 0
        for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j]! - want[j]!))
        expect(worst, name).toBeLessThan(1e-4)
      }
    }
  })

  it('stacks requests of different batch sizes into one run', async () => {
    const before = await stats(backend)
    const [a, b] = await Promise.all([
      forward(backend, encodeSafetensors(inputs(5, 2))),
      forward(backend, encodeSafetensors(inputs(6, 3))),
    ])
    expect(a.status).toBe(200)
    expect(b.status).toBe(200)
    // Different batch sizes do stack (only the batch dimension differs).
    expect(a.headers.get('x-piflow-batch-size')).toBe('5')
    const after = await stats(backend)
    expect(after.runs - before.runs).toBe(1)
  })
})

describe('queue bound, deadline and cancellation', () => {
  let backend: BackendService
  beforeAll(async () => {
    // --debug-run-delay-ms makes every run slow (as a busy accelerator would), so queueing, the
    // deadline and disconnects are observable deterministically.
    backend = await startBackend({
      args: [
        '--max-batch-size',
        '1',
        '--queue-limit',
        '2',
        '--debug-run-delay-ms',
        '1000',
        '--request-timeout-ms',
        '5000',
      ],
    })
  })
  afterAll(async () => {
    await backend?.stop()
  })

  it('rejects work beyond the queue bound with 503 queue_full and Retry-After', async () => {
    const before = await stats(backend)
    const responses = await Promise.all(
      [1, 2, 3, 4, 5, 6].map((seed) => forward(backend, encodeSafetensors(inputs(seed)))),
    )
    const statuses = responses.map((r) => r.status).sort()
    // one running + two queued succeed; the rest are turned away at once
    expect(statuses).toEqual([200, 200, 200, 503, 503, 503])
    for (const r of responses.filter((r) => r.status === 503)) {
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(await errorCode(r)).toBe('queue_full')
    }
    const after = await stats(backend)
    expect(after.rejectedQueueFull - before.rejectedQueueFull).toBe(3)
  })

  it('drops a queued request whose client disconnects, without running it', async () => {
    const before = await stats(backend)
    // first runs for 1 s; second queues behind it and leaves while still queued
    const first = forward(backend, encodeSafetensors(inputs(1)))
    await sleep(200)
    const controller = new AbortController()
    const second = forward(backend, encodeSafetensors(inputs(2)), { signal: controller.signal })
    await sleep(200)
    controller.abort()
    await expect(second).rejects.toThrow()
    expect((await first).status).toBe(200)
    await sleep(1400) // long enough for the dropped request's run, had it run
    const after = await stats(backend)
    expect(after.cancelled - before.cancelled).toBe(1)
    expect(after.runs - before.runs).toBe(1)
    expect(after.queued).toBe(0)
  })

  it('cancels queued and running requests by X-Piflow-Request-Id; the connection stays open', async () => {
    const before = await stats(backend)
    const cancel = (id: string) =>
      fetch(`${backend.url}/v1/requests/${id}/cancel`, {
        method: 'POST',
        headers: { 'X-Piflow-Backend-Secret': backend.secret },
      })
    const tagged = { headers: { 'X-Piflow-Request-Id': 'gen_cancel1' } }
    // first runs for 1 s; second queues behind it; both belong to one caller id
    const first = forward(backend, encodeSafetensors(inputs(1)), tagged)
    await sleep(200)
    const second = forward(backend, encodeSafetensors(inputs(2)), tagged)
    await sleep(200)
    const answer = await cancel('gen_cancel1')
    expect(answer.status).toBe(200)
    expect(await answer.json()).toEqual({ id: 'gen_cancel1', status: 'cancelled', requests: 2 })
    for (const response of await Promise.all([first, second])) {
      expect(response.status).toBe(499)
      expect(await errorCode(response)).toBe('cancelled')
    }
    await sleep(1400) // long enough for the queued request's run, had it run
    const after = await stats(backend)
    expect(after.cancelled - before.cancelled).toBe(2)
    expect(after.runs - before.runs).toBeLessThanOrEqual(1) // only the one already running
    // nothing is in flight under that id any more; a malformed id is refused
    expect((await cancel('gen_cancel1')).status).toBe(404)
    expect(await errorCode(await cancel('bad%20id'))).toBe('invalid_value')
  })

  it('answers 504 timeout when the deadline passes, and keeps serving', async () => {
    const slow = await startBackend({
      args: ['--debug-run-delay-ms', '1500', '--request-timeout-ms', '300'],
    })
    try {
      const response = await forward(slow, encodeSafetensors(inputs(1)))
      expect(response.status).toBe(504)
      expect(await errorCode(response)).toBe('timeout')
      expect((await stats(slow)).timedOut).toBe(1)
      expect((await fetch(`${slow.url}/healthz`)).status).toBe(200)
    } finally {
      await slow.stop()
    }
  })
})

describe('limits and shutdown', () => {
  it('refuses bodies over --max-body-bytes with 413, declared or streamed', async () => {
    const backend = await startBackend({ args: ['--max-body-bytes', '20000'] })
    try {
      const body = encodeSafetensors(inputs(1, 2)) // ~25 KB
      const response = await forward(backend, body)
      expect(response.status).toBe(413)
      expect(await errorCode(response)).toBe('payload_too_large')

      // chunked, no Content-Length: cut off while streaming
      const status = await new Promise<number | undefined>((resolve, reject) => {
        const req = httpRequest(`${backend.url}/v1/models/${MODEL}/forward`, {
          method: 'POST',
          headers: { 'X-Piflow-Backend-Secret': backend.secret, 'Transfer-Encoding': 'chunked' },
        })
        req.on('response', (res) => {
          res.resume()
          resolve(res.statusCode)
          req.destroy()
        })
        req.on('error', reject)
        for (let i = 0; i < 10; i++) req.write(new Uint8Array(4096))
      })
      expect(status).toBe(413)
      const ok = await forward(backend, encodeSafetensors(inputs(1)))
      expect(ok.status).toBe(200)
    } finally {
      await backend.stop()
    }
  })

  it('finishes in-flight work on SIGTERM, then exits 0', async () => {
    const backend = await startBackend({ args: ['--debug-run-delay-ms', '1500'] })
    const inFlight = forward(backend, encodeSafetensors(inputs(1)))
    await sleep(500)
    const exit = backend.stop()
    const response = await inFlight
    expect(response.status).toBe(200)
    expect(await exit).toBe(0)
    expect(backend.stderr()).toContain('SIGTERM, shutting down')
  })
})

describe('model verification at load', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'piflow-backend-models-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses a model whose file fails its sha256, and serves the others', async () => {
    const source = join(MODELS_DIR, MODEL)
    // A good copy under another id, and a corrupted copy under the real id.
    await cp(source, join(dir, 'good'), { recursive: true })
    const manifest = JSON.parse(await readFile(join(source, 'manifest.json'), 'utf8'))
    await writeFile(
      join(dir, 'good', 'manifest.json'),
      JSON.stringify({ ...manifest, id: 'piflow-emoji-copy' }),
    )
    await cp(source, join(dir, 'bad'), { recursive: true })
    const student = join(dir, 'bad', manifest.files.student.path)
    const handle = await open(student, 'r+')
    const at = Math.floor(manifest.files.student.bytes / 2)
    const byte = Buffer.alloc(1)
    await handle.read(byte, 0, 1, at)
    byte[0] = (byte[0] as number) ^ 0xff // same size, one byte flipped
    await handle.write(byte, 0, 1, at)
    await handle.close()

    const backend = await startBackend({ modelsDir: dir })
    try {
      const ready = (await (await fetch(`${backend.url}/readyz`)).json()) as {
        models: string[]
        refused: { id: string; reason: string }[]
      }
      expect(ready.models).toEqual(['piflow-emoji-copy'])
      expect(ready.refused).toHaveLength(1)
      expect(ready.refused[0]?.reason).toMatch(/sha256 mismatch/)
      expect(backend.stderr()).toMatch(/REFUSED model "bad": .*sha256 mismatch/)
      const refused = await forward(backend, encodeSafetensors(inputs(1)))
      expect(refused.status).toBe(404)
      expect(await errorCode(refused)).toBe('model_not_found')
      const served = await forward(backend, encodeSafetensors(inputs(1)), {}, 'piflow-emoji-copy')
      expect(served.status).toBe(200)
    } finally {
      await backend.stop()
    }
  })

  it('--model-dir serves a model directory from elsewhere; a second one with a loaded id, or none, is refused', async () => {
    const source = join(MODELS_DIR, MODEL)
    const manifest = JSON.parse(await readFile(join(source, 'manifest.json'), 'utf8'))
    const elsewhere = join(dir, 'elsewhere', 'v-next')
    await cp(source, elsewhere, { recursive: true })
    await writeFile(join(elsewhere, 'manifest.json'), JSON.stringify({ ...manifest, id: 'v-next' }))
    const empty = join(dir, 'no-manifest')
    await cp(join(source, 'NOTICE'), join(empty, 'NOTICE'))
    const backend = await startBackend({ modelDirs: [elsewhere, source, empty] })
    try {
      const ready = (await (await fetch(`${backend.url}/readyz`)).json()) as {
        models: string[]
        refused: { id: string; reason: string }[]
      }
      expect(ready.models.sort()).toEqual([MODEL, 'v-next'])
      expect(ready.refused.map((r) => r.reason)).toEqual([
        `a model with id "${MODEL}" is already loaded`,
        `no manifest.json in ${empty}`,
      ])
      const served = await forward(backend, encodeSafetensors(inputs(1)), {}, 'v-next')
      expect(served.status).toBe(200)
    } finally {
      await backend.stop()
    }
  })
})
