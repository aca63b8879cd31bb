/**
 * The SDK's cancel against the real stack (backend process + worker in workerd), in real headless
 * Chromium through the built package (the demo page's `createClient`); the backend delays every run
 * by 400 ms, so a 4-NFE generation takes ≥ 1.6 s:
 * - an aborted stream cancels its generation on the server: the caller gets its own abort reason, GET
 *   then reads `canceled`, stopped before its last NFE;
 * - `client.cancel(id)`: the canceled record; a follower's stream (`resume`) ends with `canceled` and
 *   its `done()` rejects with GenerationCanceledError; a second cancel is 409 `generation_finished`;
 * - an aborted `generate()` (over the stream, given a signal) rejects with the signal's own reason and
 *   cancels it: the same call replayed by its Idempotency-Key answers with the canceled record;
 * - `client.submit()` (`Prefer: respond-async`) answers at once with the id and its URLs, and the
 *   generation runs on (followed with `resume`);
 * - with the backend full (room for two), a submitted generation is `queued`: its stream (`resume`)
 *   yields `queued` with its position, then runs to `done`; one more is shed: ApiError 503
 *   `queue_full` with `retryAfter` (after the SDK's own retries, here none);
 * - a cached seeded stream still yields `progress` × nfe (and `done` with `cached: true`);
 * - `webhook` / `webhookEvents` pass through `submit`: a local receiver gets the signed `start` and
 *   `completed` deliveries (verified with the `standardwebhooks` package and the key's secret).
 */
import { Webhook } from 'standardwebhooks'
import { describe, expect, it } from 'vitest'
import { startScriptServer } from '../../sdk/src/testing/script-server.ts'
import { browserUnavailable } from '../support/chromium.ts'
import { useDemoSuite } from './support/demo-suite.ts'

const skipReason = browserUnavailable()

describe.skipIf(skipReason)(
  'SDK cancel, submit, the queue and webhooks against the real stack, in Chromium',
  () => {
    // Room for two running generations (batch 1 + backend queue 1), one waiting in the worker's queue.
    const suite = useDemoSuite({
      stack: {
        backendArgs: ['--max-batch-size', '1', '--queue-limit', '1', '--debug-run-delay-ms', '400'],
        env: { PIFLOW_QUEUE_LIMIT: '1' },
      },
    })

    it('an aborted stream cancels its generation on the server (GET reads canceled)', async () => {
      const outcome = await suite.page.evaluate(
        async ([api, key]) => {
          // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
          const { createClient } = (window as any).piflowDemo
          const client = createClient({ baseUrl: api, apiKey: key })
          const controller = new AbortController()
          const reason = new Error('left the page')
          let id = ''
          let rejection: unknown
          try {
            const stream = client.stream(
              { prompt: 'red apple', nfe: 4 },
              { signal: controller.signal },
            )
            for await (const e of stream) {
              if (e.type === 'id') id = e.id
              if (e.type === 'progress' && e.step === 1) controller.abort(reason)
            }
          } catch (error) {
            rejection = error
          }
          // The cancel is sent in the background: wait for the record to settle.
          let record = (await client.get(id)).data
          for (
            let i = 0;
            i < 100 && (record.status === 'running' || record.status === 'queued');
            i++
          ) {
            await new Promise((r) => setTimeout(r, 100))
            record = (await client.get(id)).data
          }
          return {
            sameReason: rejection === reason,
            status: record.status,
            step: record.progress?.step,
          }
        },
        [suite.stack.workerUrl, suite.stack.apiKey] as const,
      )
      expect(outcome.sameReason).toBe(true)
      expect(outcome.status).toBe('canceled')
      expect(outcome.step).toBeLessThan(4)
    })

    it('client.cancel(id): the follower ends with canceled, a second cancel is 409', async () => {
      const outcome = await suite.page.evaluate(
        async ([api, key]) => {
          // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
          const { createClient } = (window as any).piflowDemo
          const client = createClient({ baseUrl: api, apiKey: key })
          // The starting stream tells the id; another client follows it by id, as another tab would.
          const starter = client.stream({ prompt: 'blue car', nfe: 4 }, { cancelOnAbort: false })
          const id = (await starter[Symbol.asyncIterator]().next()).value.id
          const types: string[] = []
          const follower = createClient({ baseUrl: api, apiKey: key }).resume(id, {
            onEvent: (e: { type: string }) => types.push(e.type),
          })
          const followed = follower.done().then(
            () => 'done',
            (e: Error) => e.name,
          )
          const canceled = await client.cancel(id)
          const again = await client.cancel(id).catch((e: Record<string, unknown>) => e)
          // An aborted generate() cancels too: the same call again (same key and body) replays the
          // settled outcome, which is the canceled record.
          const input = { prompt: 'blue car', nfe: 4, seed: 5 }
          const idempotencyKey = `abort-${Math.random()}`
          const generated = await client
            .generate(input, { signal: AbortSignal.timeout(700), idempotencyKey })
            .catch((e: Error) => e.name)
          const replayed = await client
            .generate(input, { signal: new AbortController().signal, idempotencyKey })
            .catch((e: Error) => e.name)
          return {
            canceled: canceled.data.status,
            followed: await followed,
            last: types.at(-1),
            again: {
              name: again.name,
              status: again.status,
              code: again.code,
              final: (again.body as { error: { status: string } }).error.status,
            },
            generated,
            replayed,
            record: (await client.get(id)).data.status,
          }
        },
        [suite.stack.workerUrl, suite.stack.apiKey] as const,
      )
      expect(outcome.canceled).toBe('canceled')
      expect(outcome.followed).toBe('GenerationCanceledError')
      expect(outcome.last).toBe('canceled')
      expect(outcome.again).toEqual({
        name: 'ApiError',
        status: 409,
        code: 'generation_finished',
        final: 'canceled',
      })
      expect(outcome.generated).toBe('TimeoutError') // AbortSignal.timeout's own reason, as is
      expect(outcome.replayed).toBe('GenerationCanceledError')
      expect(outcome.record).toBe('canceled')
    })

    it('submit answers at once with the id and its URLs; the generation runs on', async () => {
      const outcome = await suite.page.evaluate(
        async ([api, key]) => {
          // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
          const { createClient } = (window as any).piflowDemo
          const client = createClient({ baseUrl: api, apiKey: key })
          const submitted = await client.submit({ prompt: 'blue car', nfe: 4 })
          const result = await client.resume(submitted.data.id).done()
          return { submitted: submitted.data, final: result.data.status }
        },
        [suite.stack.workerUrl, suite.stack.apiKey] as const,
      )
      expect(outcome.submitted.id).toMatch(/^gen_/)
      expect(['queued', 'running']).toContain(outcome.submitted.status)
      expect(outcome.submitted.urls.cancel).toBe(
        `${suite.stack.workerUrl}/v1/generations/${outcome.submitted.id}/cancel`,
      )
      expect(outcome.final).toBe('succeeded')
    })

    it('a queued generation streams queued with its position, then runs; past the bound 503 queue_full', async () => {
      const outcome = await suite.page.evaluate(
        async ([api, key]) => {
          // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
          const { createClient } = (window as any).piflowDemo
          const client = createClient({ baseUrl: api, apiKey: key })
          await client.submit({ prompt: 'one', nfe: 4 })
          await client.submit({ prompt: 'two', nfe: 4 })
          const third = await client.submit({ prompt: 'three', nfe: 4 })
          const types: string[] = []
          const positions: number[] = []
          // Followed by id: the worker's own POST stream does not send `queued` (yet).
          const done = client
            .resume(third.data.id, {
              onEvent: (e: { type: string; queuePosition?: number }) => {
                if (types.at(-1) !== e.type) types.push(e.type)
                if (e.type === 'queued') positions.push(e.queuePosition!)
              },
            })
            .done()
          const shed = await createClient({ baseUrl: api, apiKey: key, retry: 0 })
            .generate({ prompt: 'four', nfe: 4 })
            .catch((e: Record<string, unknown>) => e)
          const result = await done
          return {
            types,
            positions,
            shed: {
              name: shed.name,
              status: shed.status,
              code: shed.code,
              retryAfter: shed.retryAfter,
            },
            submitted: third.data.status,
            status: result.data.status,
          }
        },
        [suite.stack.workerUrl, suite.stack.apiKey] as const,
      )
      expect(outcome.submitted).toBe('queued')
      expect(outcome.types).toEqual(['id', 'queued', 'progress', 'image', 'done'])
      expect(outcome.positions[0]).toBe(1)
      expect(outcome.shed).toMatchObject({ name: 'ApiError', status: 503, code: 'queue_full' })
      expect(outcome.shed.retryAfter).toBeGreaterThanOrEqual(0)
      expect(outcome.status).toBe('succeeded')
    })

    it('a cached seeded stream still yields progress × nfe, then done with cached: true', async () => {
      const runs = await suite.page.evaluate(
        async ([api, key]) => {
          // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
          const { createClient } = (window as any).piflowDemo
          const client = createClient({ baseUrl: api, apiKey: key })
          const runs = []
          for (let i = 0; i < 2; i++) {
            const types: string[] = []
            const stream = client.stream(
              { prompt: 'cached pear', seed: 42, nfe: 4 },
              { onEvent: (e: { type: string }) => types.push(e.type) },
            )
            runs.push({ types, cached: (await stream.done()).data.cached })
          }
          return runs
        },
        [suite.stack.workerUrl, suite.stack.apiKey] as const,
      )
      const sequence = ['id', 'progress', 'progress', 'progress', 'progress', 'image', 'done']
      expect(runs).toEqual([
        { types: sequence, cached: false },
        { types: sequence, cached: true },
      ])
    })

    it('passes webhook and webhookEvents through: the receiver gets signed start and completed', async () => {
      const receiver = await startScriptServer((_req, res) => void res.writeHead(204).end())
      try {
        const { workerUrl, apiKey } = suite.stack
        const id = await suite.page.evaluate(
          async ([api, key, hook]) => {
            // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
            const { createClient } = (window as any).piflowDemo
            const client = createClient({ baseUrl: api, apiKey: key })
            const input = {
              prompt: 'red apple',
              webhook: hook,
              webhookEvents: ['start', 'completed'],
            }
            const submitted = await client.submit(input)
            await client.resume(submitted.data.id).done()
            return submitted.data.id as string
          },
          [workerUrl, apiKey, `${receiver.url}/hook`] as const,
        )
        for (let i = 0; i < 200 && receiver.requests.length < 2; i++) {
          await new Promise((r) => setTimeout(r, 50))
        }
        const secret = await fetch(`${workerUrl}/v1/webhook-secret`, {
          headers: { authorization: `Bearer ${apiKey}` },
        }).then((r) => r.json() as Promise<{ secret: string }>)
        const verifier = new Webhook(secret.secret)
        const events = receiver.requests.map((r) => {
          const headers = Object.fromEntries(
            ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((h) => [
              h,
              String(r.headers[h]),
            ]),
          )
          return verifier.verify(r.body, headers) as { type: string; data: { id?: string } }
        })
        expect(events.map((e) => e.type).sort()).toEqual([
          'generation.completed',
          'generation.start',
        ])
        expect(JSON.stringify(events)).toContain(id)
      } finally {
        await receiver.close()
      }
    })
  },
)
