/**
 * Client tokens against the real stack (backend process + worker in workerd), in real headless
 * Chromium through the built package:
 * - the proxy pattern for client tokens: the page's `tokenProvider` asks a route of its own origin,
 *   which mints `POST /v1/tokens` with the key the page never sees (the demo's `?tokens=` mode);
 * - a real 1-second token that the provider claims lives an hour expires, the API answers 401
 *   `token_expired`, and the SDK refreshes once and repeats the call.
 */
import { describe, expect, it } from 'vitest'
import { browserUnavailable } from '../support/chromium.ts'
import { openDemoPage, useDemoSuite } from './support/demo-suite.ts'

const skipReason = browserUnavailable()

describe.skipIf(skipReason)('SDK client tokens against the real stack, in Chromium', () => {
  /** Tokens minted by the page's proxy route, in order. */
  const minted: { token: string; expiresAt: string }[] = []
  let mintTtl = 600
  const suite = useDemoSuite({
    // The page's own server: mints a client token with the key, which stays on this side.
    prepare: ({ context, server, stack }) =>
      context.route(`${server.url}/token-proxy`, async (route) => {
        const response = await fetch(`${stack.workerUrl}/v1/tokens`, {
          method: 'POST',
          headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ttlSeconds: mintTtl }),
        })
        const body = await response.json()
        if (response.ok) minted.push(body)
        await route.fulfill({ status: response.status, json: body })
      }),
  })

  it("the demo page's proxy pattern: ?tokens= generates remotely without the key in the page", async () => {
    minted.length = 0
    const { context, server, stack } = suite
    const tokens = encodeURIComponent(`${server.url}/token-proxy`)
    const api = encodeURIComponent(stack.workerUrl)
    const p = await openDemoPage(context, server.url, `api=${api}&tokens=${tokens}`)
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
    // A real short-lived token: 5 s, so that the first generation finishes inside it even on a loaded
    // machine (1 s was not enough there: a second 401 mid-generation made three mints), and the page
    // waits until it has expired before the second generation …
    mintTtl = 5
    const outcome = await suite.page.evaluate(
      async ([api, origin]) => {
        // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
        const { createClient } = (window as any).piflowDemo
        let asked = 0
        let firstExpiry = 0
        const client = createClient({
          baseUrl: api,
          // … that the provider claims lives an hour: only the API's 401 can tell the SDK.
          tokenProvider: async () => {
            asked++
            const { token, expiresAt } = await (
              await fetch(`${origin}/token-proxy`, { method: 'POST' })
            ).json()
            if (!firstExpiry) firstExpiry = Date.parse(expiresAt)
            return { token, expiresAt: Date.now() + 3_600_000 }
          },
        })
        const first = await client.generate({ prompt: 'green leaf', seed: 3 })
        // past the real expiry (whole seconds on the server: a 1 s margin)
        await new Promise((r) => setTimeout(r, Math.max(0, firstExpiry - Date.now()) + 1000))
        const second = await client.generate({ prompt: 'green leaf', seed: 4 })
        return { asked, first: first.data.status, second: second.data.status }
      },
      [suite.stack.workerUrl, suite.server.url] as const,
    )
    mintTtl = 600
    expect(outcome).toEqual({ asked: 2, first: 'succeeded', second: 'succeeded' })
    expect(minted).toHaveLength(2)
    expect(minted[0]!.token).not.toBe(minted[1]!.token)
    expect(Date.parse(minted[0]!.expiresAt)).toBeGreaterThan(0)
  })
})
