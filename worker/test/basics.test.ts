import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { BASE, call, createKey, type ErrorJson, generate } from './helpers.ts'

describe('errors and auth', () => {
  it('healthz answers without auth and carries a request id', async () => {
    const res = await SELF.fetch(`${BASE}/healthz`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ status: 'ok' })
    expect(res.headers.get('X-Request-Id')).toMatch(/^req_/)
  })

  it('unknown routes are 404 with the error shape', async () => {
    const res = await call('/v1/nope')
    expect(res.status).toBe(404)
    const body = (await res.json()) as ErrorJson
    expect(body.error.code).toBe('route_not_found')
    expect(body.requestId).toBe(res.headers.get('X-Request-Id'))
  })

  it('401 without a key, with WWW-Authenticate and CORS headers', async () => {
    const res = await generate(
      { prompt: 'apple' },
      { key: null, headers: { Origin: 'https://a.example' } },
    )
    expect(res.status).toBe(401)
    expect(res.headers.get('WWW-Authenticate')).toContain('Bearer')
    expect(res.headers.get('Access-Control-Allow-Origin')).toBe('*')
    expect(((await res.json()) as ErrorJson).error.code).toBe('unauthorized')
  })

  it('400 for a malformed Authorization header', async () => {
    const res = await call('/v1/generations/gen_x', {
      headers: { Authorization: 'Basic abc' },
      key: null,
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as ErrorJson).error.code).toBe('malformed_authorization')
  })

  it('keys in the query string are refused', async () => {
    const res = await call('/v1/generations/gen_x?api_key=pf_dev_abc', { key: null })
    expect(res.status).toBe(400)
    expect(((await res.json()) as ErrorJson).error.code).toBe('credentials_in_query')
  })

  it('wrong secrets, unknown ids and non-key strings are all the same 401', async () => {
    const good = await createKey()
    const wrongSecret = `${good.slice(0, -4)}abcd`
    const unknownId = good.replace(/^pf_[a-z0-9]+_/, 'pf_zzzzzz_')
    for (const key of [wrongSecret, unknownId, 'not-a-key', `${good}x`]) {
      const res = await call('/v1/generations/gen_x', { key })
      expect(res.status, key).toBe(401)
      expect(((await res.json()) as ErrorJson).error.code).toBe('unauthorized')
    }
    expect((await call('/v1/generations/gen_x', { key: good })).status).toBe(404)
  })

  it('revoked keys are refused; missing scopes are 403', async () => {
    const revoked = await createKey({ revoked: true })
    expect((await call('/v1/generations/gen_x', { key: revoked })).status).toBe(401)
    const readOnly = await createKey({ scopes: ['generations:read'] })
    const res = await generate({ prompt: 'apple' }, { key: readOnly })
    expect(res.status).toBe(403)
    expect(((await res.json()) as ErrorJson).error.code).toBe('forbidden')
  })

  it('CORS preflight exposes the rate-limit and request-id headers', async () => {
    const res = await SELF.fetch(`${BASE}/v1/generations`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://app.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,content-type,idempotency-key',
      },
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('Access-Control-Allow-Headers')).toMatch(/Idempotency-Key/i)
  })
})

describe('security headers', () => {
  it('every response carries nosniff, frame and referrer protection; CORP stays cross-origin', async () => {
    for (const path of ['/healthz', '/v1/models', '/v1/nope']) {
      const response = await SELF.fetch(`${BASE}${path}`)
      expect(response.headers.get('X-Content-Type-Options')).toBe('nosniff')
      expect(response.headers.get('X-Frame-Options')).toBe('SAMEORIGIN')
      expect(response.headers.get('Referrer-Policy')).toBe('no-referrer')
      expect(response.headers.get('Cross-Origin-Resource-Policy')).toBe('cross-origin')
    }
  })
})
