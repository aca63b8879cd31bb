/**
 * Webhook target rules (webhooks.ts) and their 422 at validation, in local and production mode; the
 * secret route. Deliveries themselves are tested end to end against a real receiver
 * (test/e2e/webhooks.test.ts).
 */
import { describe, expect, it } from 'vitest'
import { refuseWebhookTarget } from '../src/webhooks.ts'
import { call, callWithVars, createKey, type ErrorJson, settleCalls } from './helpers.ts'

describe('webhook targets', () => {
  it('allows public https, and loopback (http too) only in local mode', () => {
    expect(refuseWebhookTarget('https://hooks.example.com/piflow', false)).toBeUndefined()
    expect(refuseWebhookTarget('https://93.184.216.34/hook', false)).toBeUndefined()
    expect(refuseWebhookTarget('http://127.0.0.1:9000/hook', true)).toBeUndefined()
    expect(refuseWebhookTarget('http://localhost:9000/hook', true)).toBeUndefined()
    for (const url of [
      'http://127.0.0.1:9000/hook',
      'https://localhost/hook',
      'https://[::1]/hook',
      'https://127.1/hook', // URL parsing normalises to 127.0.0.1
      'https://0x7f000001/hook',
      'https://[::ffff:127.0.0.1]/hook',
      'https://10.1.2.3/',
      'https://172.16.0.1/',
      'https://192.168.0.10/',
      'https://100.64.0.1/',
      'https://169.254.169.254/latest/meta-data',
      'https://metadata.google.internal/',
      'https://printer.local/',
      'https://intranet/',
      'https://[fe80::1]/',
      'https://[fd12::1]/',
      'https://0.0.0.0/',
      'https://user:pass@hooks.example.com/',
      'http://hooks.example.com/',
      'not a url',
    ]) {
      expect(refuseWebhookTarget(url, false), url).toBeDefined()
    }
    expect(refuseWebhookTarget('https://10.1.2.3/', true)).toBeDefined()
  })

  it('a loopback webhook is a 422 outside local mode; webhookEvents needs a webhook', async () => {
    const key = await createKey()
    const production = {
      PIFLOW_ENV: 'production',
      PIFLOW_PUBLIC_ORIGIN: 'https://api.example.com',
    }
    const res = await callWithVars(production, '/v1/generations', {
      method: 'POST',
      key,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'red apple', webhook: 'http://127.0.0.1:9/hook' }),
    })
    expect(res.status).toBe(422)
    expect(((await res.json()) as ErrorJson).error.code).toBe('webhook_url_refused')
    const orphan = await call('/v1/generations', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'red apple', webhookEvents: ['start'] }),
    })
    expect(orphan.status).toBe(422)
    await settleCalls()
  })

  it('GET /v1/webhook-secret: stable per key, different across keys, not for tokens', async () => {
    const key = await createKey()
    const secret = async (k: string) =>
      ((await (await call('/v1/webhook-secret', { key: k })).json()) as { secret: string }).secret
    const first = await secret(key)
    expect(first).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    expect(await secret(key)).toBe(first)
    expect(await secret(await createKey())).not.toBe(first)
    const minted = await call('/v1/tokens', {
      method: 'POST',
      key,
      headers: { 'Content-Type': 'application/json' },
      body: '{}',
    })
    const { token } = (await minted.json()) as { token: string }
    expect((await call('/v1/webhook-secret', { key: token })).status).toBe(403)
  })
})
