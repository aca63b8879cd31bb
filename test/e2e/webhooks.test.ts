/**
 * Webhooks through the real stack (wrangler dev in local mode + a backend process) to a real local HTTP
 * receiver: every delivery verifies with the `standardwebhooks` package (an independent implementation
 * of the scheme), a 500 is retried under the same webhook-id, a redirect is not followed, and private
 * targets are refused at validation.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Stack, startStack } from '../support/stack.ts'

interface Received {
  path: string
  headers: IncomingHttpHeaders
  body: string
  at: number
}

let stack: Stack
let receiver: Server
let base: string
const received: Received[] = []
const flakyFailures = new Map<string, number>()

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const path = req.url ?? '/'
      const body = Buffer.concat(chunks).toString('utf8')
      received.push({ path, headers: req.headers, body, at: Date.now() })
      if (path.startsWith('/flaky')) {
        // The first attempt of each event fails.
        const id = String(req.headers['webhook-id'])
        const failures = flakyFailures.get(id) ?? 0
        flakyFailures.set(id, failures + 1)
        res.writeHead(failures === 0 ? 500 : 204).end()
      } else if (path.startsWith('/redirect')) {
        res.writeHead(302, { Location: `${base}/target` }).end()
      } else res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`
  stack = await startStack()
})
afterAll(async () => {
  await stack?.stop()
  await new Promise((resolve) => receiver?.close(resolve))
})

const call = (path: string, body?: unknown) =>
  fetch(`${stack.workerUrl}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: `Bearer ${stack.apiKey}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })

async function until<T>(what: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const value = what()
    if (value !== undefined) return value
    if (Date.now() > end) throw new Error('timed out waiting for webhook deliveries')
    await new Promise((r) => setTimeout(r, 50))
  }
}

const at = (path: string) => received.filter((r) => r.path === path)

describe('webhooks', () => {
  it('delivers start, progress per NFE and completed, each verifiable with standardwebhooks', async () => {
    const { secret } = (await (await call('/v1/webhook-secret')).json()) as { secret: string }
    expect(secret).toMatch(/^whsec_/)
    const res = await call('/v1/generations', {
      prompt: 'red apple',
      webhook: `${base}/ok`,
      webhookEvents: ['start', 'progress', 'completed'],
    })
    expect(res.status).toBe(200)
    const generation = (await res.json()) as { id: string }
    const all = await until(() => (at('/ok').length >= 6 ? at('/ok') : undefined))
    const verifier = new Webhook(secret)
    const payloads = all.map((r) => {
      const headers = Object.fromEntries(
        ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((h) => [
          h,
          String(r.headers[h]),
        ]),
      )
      return verifier.verify(r.body, headers) as { type: string; data: Record<string, unknown> }
    })
    expect(payloads.map((p) => p.type).sort()).toEqual(
      [
        'generation.completed',
        'generation.progress',
        'generation.progress',
        'generation.progress',
        'generation.progress',
        'generation.start',
      ].sort(),
    )
    const completed = payloads.find((p) => p.type === 'generation.completed')!
    expect(completed.data).toMatchObject({ id: generation.id, status: 'succeeded' })
    expect(new Set(all.map((r) => r.headers['webhook-id'])).size).toBe(6)
    // A forged signature does not verify.
    const forged = { ...all[0]!.headers, 'webhook-signature': 'v1,AAAA' }
    expect(() =>
      verifier.verify(
        all[0]!.body,
        Object.fromEntries(Object.entries(forged).map(([k, v]) => [k, String(v)])),
      ),
    ).toThrow()
  })

  it('retries after a 500 under the same webhook-id', async () => {
    await call('/v1/generations', { prompt: 'green leaf', webhook: `${base}/flaky` })
    const attempts = await until(() => (at('/flaky').length >= 2 ? at('/flaky') : undefined))
    expect(attempts[0]!.headers['webhook-id']).toBe(attempts[1]!.headers['webhook-id'])
    expect(JSON.parse(attempts[1]!.body).type).toBe('generation.completed')
  })

  it('does not follow a redirect', async () => {
    await call('/v1/generations', { prompt: 'blue heart', webhook: `${base}/redirect` })
    // The 302 counts as a failure: retried (after ~1 s) at the same URL, never at its Location.
    await until(() => (at('/redirect').length >= 2 ? true : undefined))
    expect(at('/target')).toHaveLength(0)
  })

  it('refuses private, link-local and plain-http targets with 422 webhook_url_refused', async () => {
    for (const webhook of [
      'https://10.0.0.1/hook',
      'https://192.168.1.1/hook',
      'https://169.254.169.254/latest/meta-data',
      'https://metadata.google.internal/',
      'https://[fd00::1]/hook',
      'http://example.com/hook',
      'ftp://127.0.0.1/hook',
    ]) {
      const res = await call('/v1/generations', { prompt: 'pear', webhook })
      expect(res.status, webhook).toBe(422)
      const body = (await res.json()) as { error: { code: string; fields: { path: string }[] } }
      expect(body.error.code, webhook).toBe('webhook_url_refused')
      expect(body.error.fields[0]!.path).toBe('webhook')
    }
  })
})
