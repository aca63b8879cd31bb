/**
 * Client tokens (`POST /v1/tokens`) in workerd: minted with a key, used like it (same tenant, same
 * quota, fewer scopes), refused once expired, revoked with their key, and unable to mint or revoke.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { sha256Hex } from '../src/crypto.ts'
import { mintClientToken } from '../src/tokens.ts'
import {
  backendAvailable,
  call,
  createKey,
  type ErrorJson,
  generate,
  settleCalls,
} from './helpers.ts'

interface Minted {
  token: string
  expiresAt: string
  scopes: string[]
}

const mint = (key: string | undefined, body: unknown = {}) =>
  call('/v1/tokens', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    ...(key === undefined ? {} : { key }),
  })

async function mintOk(key: string, body: unknown = {}): Promise<Minted> {
  const res = await mint(key, body)
  expect(res.status).toBe(201)
  return (await res.json()) as Minted
}

const code = async (res: Response) => ((await res.json()) as ErrorJson).error.code

afterEach(settleCalls)

describe('client tokens', () => {
  it('mints { token, expiresAt, scopes } with generate-only defaults and bounded ttl', async () => {
    const key = await createKey()
    const before = Date.now()
    const minted = await mintOk(key)
    expect(minted.token).toMatch(/^pft_/)
    expect(minted.token.length).toBeLessThanOrEqual(256)
    expect(minted.scopes).toEqual(['generations:write', 'generations:read'])
    const expires = Date.parse(minted.expiresAt)
    expect(expires).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 600_000)
    expect(expires).toBeLessThanOrEqual(Date.now() + 600_000)

    const readOnly = await mintOk(key, { ttlSeconds: 3600, scopes: ['generations:read'] })
    expect(readOnly.scopes).toEqual(['generations:read'])
    for (const ttlSeconds of [0, 3601, 1.5]) {
      const res = await mint(key, { ttlSeconds })
      expect(res.status, String(ttlSeconds)).toBe(422)
    }
    expect((await mint(key, { scopes: ['admin'] })).status).toBe(422)
    expect((await mint(key, { extra: 1 })).status).toBe(422)
    // Scopes beyond the key's are refused.
    const narrow = await createKey({ scopes: ['generations:read'] })
    const wider = await mint(narrow, { scopes: ['generations:write'] })
    expect(wider.status).toBe(403)
    expect(await code(wider)).toBe('forbidden')
    expect((await mintOk(narrow)).scopes).toEqual(['generations:read'])
    expect((await mint(undefined)).status).toBe(201) // the dev key
  })

  it('a token cannot mint tokens or revoke its key; a tampered one is unknown', async () => {
    const key = await createKey()
    const { token } = await mintOk(key)
    const again = await mint(token)
    expect(again.status).toBe(403)
    expect(await code(again)).toBe('token_cannot_mint')
    const keyId = /^pf_([a-z0-9]+)_/.exec(key)![1]!
    const revoke = await call(`/v1/keys/${keyId}`, { method: 'DELETE', key: token })
    expect(revoke.status).toBe(403)
    const tampered = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`
    const res = await call('/v1/generations/gen_x', { key: tampered })
    expect(res.status).toBe(401)
    expect(await code(res)).toBe('unauthorized')
    // More scopes written into a token than were signed: the signature fails.
    const widened = token.replace(/^(pft_[a-z0-9]+)\.\d+\./, '$1.7.')
    expect((await call('/v1/generations/gen_x', { key: widened })).status).toBe(401)
  })

  it('an expired token answers 401 token_expired', async () => {
    const key = await createKey()
    const principal = {
      keyId: /^pf_([a-z0-9]+)_/.exec(key)![1]!,
      keyHash: await sha256Hex(key),
      scopes: ['generations:read' as const],
      rateLimit: undefined,
      maxCount: undefined,
      credential: 'key' as const,
    }
    const { env } = await import('cloudflare:test')
    const secret = env.PIFLOW_SIGNING_SECRET!
    const expired = await mintClientToken(
      secret,
      principal,
      principal.scopes,
      60,
      Date.now() - 61_000,
    )
    const res = await call('/v1/generations/gen_x', { key: expired.token })
    expect(res.status).toBe(401)
    expect(await code(res)).toBe('token_expired')
    const live = await mintClientToken(secret, principal, principal.scopes, 60)
    expect((await call('/v1/generations/gen_x', { key: live.token })).status).toBe(404)
  })

  it('dies with its key', async () => {
    const key = await createKey()
    const { token } = await mintOk(key)
    expect((await call('/v1/generations/gen_x', { key: token })).status).toBe(404)
    const keyId = /^pf_([a-z0-9]+)_/.exec(key)![1]!
    expect((await call(`/v1/keys/${keyId}`, { method: 'DELETE', key })).status).toBe(200)
    const res = await call('/v1/generations/gen_x', { key: token })
    expect(res.status).toBe(401)
  })

  it.skipIf(!backendAvailable())(
    "acts as its key: the key's tenant and quota; a read-only token cannot generate",
    async () => {
      const key = await createKey({ rateLimit: { limit: 1, windowSeconds: 600 } })
      const { token } = await mintOk(key)
      const made = await generate({ prompt: 'red apple' }, { key: token })
      expect(made.status).toBe(200)
      const { id } = (await made.json()) as { id: string }
      // The key sees the token's generation; another key does not.
      expect((await call(`/v1/generations/${id}`, { key })).status).toBe(200)
      expect((await call(`/v1/generations/${id}`, { key: await createKey() })).status).toBe(404)
      // The token spent the key's only unit.
      const limited = await generate({ prompt: 'red apple' }, { key })
      expect(limited.status).toBe(429)

      const { token: readOnly } = await mintOk(key, { scopes: ['generations:read'] })
      expect((await call(`/v1/generations/${id}`, { key: readOnly })).status).toBe(200)
      const refused = await generate({ prompt: 'pear' }, { key: readOnly })
      expect(refused.status).toBe(403)
      expect(((await refused.json()) as ErrorJson).error.message).toContain('token')
    },
  )
})
