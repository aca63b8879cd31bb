/**
 * PENDING until the worker's cancel / respond-async / tokens endpoints (task J, branch wip-jobs) are
 * merged: then rename this file to `sdk-jobs.test.ts` so the `test` project runs it.
 *
 * The SDK's jobs and client tokens against the real stack (backend process + worker in workerd), in
 * real headless Chromium through the built package (the demo page's `createClient`):
 * - an aborted stream cancels its generation on the server: GET then reads `canceled`, stopped before
 *   its last NFE (the backend delays every run by 400 ms, so a 4-NFE generation takes ≥ 1.6 s);
 * - `client.cancel(id)` on a submitted (`Prefer: respond-async`) generation: a follower's stream ends
 *   with `canceled`, `done()` rejects with GenerationCanceledError, a second cancel is 409;
 * - the proxy pattern for client tokens: the page's `tokenProvider` asks a route of its own origin,
 *   which mints `POST /v1/tokens` with the key the page never sees; a real 1-second token that the
 *   provider claims lives an hour expires, the API answers 401 `token_expired`, and the SDK refreshes
 *   once and repeats the call.
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { browserUnavailable, launchChromium } from '../support/chromium.ts'
import { type Stack, startStack } from '../support/stack.ts'
import { type StaticServer, startStaticServer } from './support/static-server.ts'

const skipReason = browserUnavailable()

describe.skipIf(skipReason)(
  'SDK jobs and client tokens against the real stack, in Chromium',
  () => {
    let server: StaticServer
    let browser: Browser
    let stack: Stack
    let page: Page
    /** Tokens minted by the page's proxy route, in order. */
    const minted: { token: string; expiresAt: string }[] = []
    let mintTtl = 600

    beforeAll(async () => {
      execFileSync('npx', ['tsx', join(import.meta.dirname, '../../sdk/build.ts')], {
        stdio: 'pipe',
      })
      server = await startStaticServer()
      browser = await launchChromium()
      stack = await startStack({ backendArgs: ['--debug-run-delay-ms', '400'] })
      page = await browser.newPage()
      // The page's own server: mints a client token with the key, which stays on this side.
      await page.route(`${server.url}/token-proxy`, async (route) => {
        const response = await fetch(`${stack.workerUrl}/v1/tokens`, {
          method: 'POST',
          headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ttlSeconds: mintTtl }),
        })
        const body = await response.json()
        if (response.ok) minted.push(body)
        await route.fulfill({ status: response.status, json: body })
      })
      await page.goto(`${server.url}/demo/index.html`)
      await page.waitForFunction(
        () => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready,
      )
    }, 240_000)
    afterAll(async () => {
      await browser?.close()
      await server?.close()
      await stack?.stop()
    })

    it('an aborted stream cancels its generation on the server (GET reads canceled)', async () => {
      const outcome = await page.evaluate(
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
        [stack.workerUrl, stack.apiKey] as const,
      )
      expect(outcome.sameReason).toBe(true)
      expect(outcome.status).toBe('canceled')
      expect(outcome.step).toBeLessThan(4)
    })

    it('cancels a submitted generation: a follower ends with canceled, a second cancel is 409', async () => {
      const outcome = await page.evaluate(
        async ([api, key]) => {
          // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
          const { createClient } = (window as any).piflowDemo
          const client = createClient({ baseUrl: api, apiKey: key })
          const submitted = await client.submit({ prompt: 'blue car', nfe: 4 })
          const types: string[] = []
          const follower = client.resume(submitted.data.id, {
            onEvent: (e: { type: string }) => types.push(e.type),
          })
          const followed = follower.done().then(
            () => 'done',
            (e: Error) => e.name,
          )
          await new Promise((r) => setTimeout(r, 300))
          const canceled = await client.cancel(submitted.data.id)
          const again = await client
            .cancel(submitted.data.id)
            .catch((e: Record<string, unknown>) => e)
          return {
            submitted: submitted.data,
            canceled: canceled.data.status,
            followed: await followed,
            last: types.at(-1),
            again: { name: again.name, status: again.status, code: again.code },
          }
        },
        [stack.workerUrl, stack.apiKey] as const,
      )
      expect(outcome.submitted.id).toMatch(/^gen_/)
      expect(outcome.submitted.urls.cancel).toBe(
        `${stack.workerUrl}/v1/generations/${outcome.submitted.id}/cancel`,
      )
      expect(outcome.canceled).toBe('canceled')
      expect(outcome.followed).toBe('GenerationCanceledError')
      expect(outcome.last).toBe('canceled')
      expect(outcome.again).toEqual({ name: 'ApiError', status: 409, code: 'generation_finished' })
    })

    it("the demo page's proxy pattern: ?tokens= generates remotely without the key in the page", async () => {
      minted.length = 0
      const p = await page.context().newPage()
      const query = `api=${encodeURIComponent(stack.workerUrl)}&tokens=${encodeURIComponent(`${server.url}/token-proxy`)}`
      await p.goto(`${server.url}/demo/index.html?${query}`)
      await p.waitForFunction(
        () => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready,
      )
      const result = await p.evaluate(() =>
        (
          window as unknown as {
            piflowDemo: { generate: (path: string, input: unknown) => Promise<{ backend: string }> }
          }
        ).piflowDemo.generate('auto', { prompt: 'red apple', seed: 7, size: 32 }),
      )
      expect(result.backend).toBe('remote')
      expect(minted).toHaveLength(1)
      expect(await p.content()).not.toContain(stack.apiKey)
      await p.close()
    })

    it('uses client tokens from its own proxy route, refreshing once after 401 token_expired', async () => {
      minted.length = 0
      mintTtl = 1 // a real 1-second token …
      const outcome = await page.evaluate(
        async ([api, origin]) => {
          // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
          const { createClient } = (window as any).piflowDemo
          let asked = 0
          const client = createClient({
            baseUrl: api,
            // … that the provider claims lives an hour: only the API's 401 can tell the SDK.
            tokenProvider: async () => {
              asked++
              const { token } = await (
                await fetch(`${origin}/token-proxy`, { method: 'POST' })
              ).json()
              return { token, expiresAt: Date.now() + 3_600_000 }
            },
          })
          const first = await client.generate({ prompt: 'green leaf', seed: 3 })
          await new Promise((r) => setTimeout(r, 1500))
          const second = await client.generate({ prompt: 'green leaf', seed: 4 })
          return { asked, first: first.data.status, second: second.data.status }
        },
        [stack.workerUrl, server.url] as const,
      )
      mintTtl = 600
      expect(outcome).toEqual({ asked: 2, first: 'succeeded', second: 'succeeded' })
      expect(minted).toHaveLength(2)
      expect(minted[0]!.token).not.toBe(minted[1]!.token)
      expect(Date.parse(minted[0]!.expiresAt)).toBeGreaterThan(0)
    })
  },
)
