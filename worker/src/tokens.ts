/**
 * @module tokens
 * Short-lived client tokens (`POST /v1/tokens`): what a server holding an API key hands a browser, so
 * the key never leaves the server. A token is stateless and signed:
 *
 *   pft_<keyId>.<scope bits>.<expiry, epoch seconds>.<HMAC-SHA256, base64url>
 *
 * The HMAC (under PIFLOW_SIGNING_SECRET, domain-separated from image URLs) covers the fields and the
 * minting key's stored hash, which is not in the token. Verifying one reads that key's KV record, so a
 * token dies with its key: revoked (refused), or replaced under the same id (the hash no longer
 * matches, the signature fails). No storage per token, nothing to clean up; the price is that a token
 * cannot be revoked on its own (its TTL, at most an hour, bounds it; revoke the key to end them all).
 * A token acts as its key (same tenant Ledger, same quota) with a subset of its scopes.
 */
import { hmac, timingSafeEqualStrings } from './crypto.ts'
import { apiKeyRecordSchema, KEY_MEMO_MS, type Principal, SCOPES, type Scope } from './keys.ts'
import { isRevokedHere } from './revocations.ts'

/** Marks a presented bearer credential as a client token (keys start with `pf_`). */
export const TOKEN_PREFIX = 'pft_'
/** Longest and default lifetime of a token. */
export const MAX_TOKEN_TTL_SECONDS = 3600
export const DEFAULT_TOKEN_TTL_SECONDS = 600
/** What a token may do unless asked otherwise: run and read (and cancel) its key's generations. */
export const DEFAULT_TOKEN_SCOPES: readonly Scope[] = ['generations:write', 'generations:read']

const TOKEN_PATTERN = /^pft_([a-z0-9]{1,32})\.(\d{1,3})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/

const scopeBits = (scopes: readonly Scope[]) =>
  scopes.reduce((bits, scope) => bits | (1 << SCOPES.indexOf(scope)), 0)
const scopesOf = (bits: number) => SCOPES.filter((_, i) => bits & (1 << i))

const signature = (secret: string, fields: string, keyHash: string) =>
  hmac(secret, `piflow-client-token:v1:${fields}:${keyHash}`)

/** A minted token and what it allows. */
export interface ClientToken {
  token: string
  expiresAt: string
  scopes: Scope[]
}

/** Signs a token for `principal`'s key (the caller checked that `scopes` are the key's). */
export async function mintClientToken(
  secret: string,
  principal: Principal,
  scopes: readonly Scope[],
  ttlSeconds: number,
  now = Date.now(),
): Promise<ClientToken> {
  const expires = Math.floor(now / 1000) + ttlSeconds
  const fields = `${principal.keyId}.${scopeBits(scopes)}.${expires}`
  const sig = await signature(secret, fields, principal.keyHash)
  return {
    token: `${TOKEN_PREFIX}${fields}.${sig}`,
    expiresAt: new Date(expires * 1000).toISOString(),
    scopes: scopesOf(scopeBits(scopes)),
  }
}

/** What verifying a token found: its principal, and whether it has expired. */
export interface VerifiedToken {
  principal: Principal
  expired: boolean
}

/**
 * Resolves a presented client token; undefined when malformed, forged, or its key is unknown,
 * revoked or replaced. An expired token still resolves (with `expired`), so the caller can say so.
 */
export async function verifyClientToken(
  kv: KVNamespace,
  secret: string,
  token: string,
  now = Date.now(),
): Promise<VerifiedToken | undefined> {
  const hit = memo.get(token)
  if (hit && hit.until > now && !isRevokedHere(hit.principal.keyHash)) {
    return { principal: hit.principal, expired: hit.expiresMs <= now }
  }
  const verified = await verifyUncached(kv, secret, token)
  if (verified) {
    if (memo.size > 1000) memo.clear()
    memo.set(token, { ...verified, until: now + KEY_MEMO_MS })
  }
  return verified && { principal: verified.principal, expired: verified.expiresMs <= now }
}

/**
 * How long an isolate trusts a token it verified: as long as a key record (keys.ts), so a token
 * follows its key's revocation within the same bound.
 */
const memo = new Map<string, { principal: Principal; expiresMs: number; until: number }>()

async function verifyUncached(
  kv: KVNamespace,
  secret: string,
  token: string,
): Promise<{ principal: Principal; expiresMs: number } | undefined> {
  const match = TOKEN_PATTERN.exec(token)
  if (!match) return undefined
  const [, keyId, bits, expires, sig] = match as unknown as [string, string, string, string, string]
  const raw = await kv.get(`key:${keyId}`, 'json')
  const record = raw === null ? undefined : apiKeyRecordSchema.safeParse(raw).data
  if (!record || record.revoked || isRevokedHere(record.hash)) return undefined
  const expected = await signature(secret, `${keyId}.${bits}.${expires}`, record.hash)
  if (!(await timingSafeEqualStrings(sig, expected))) return undefined
  // A token never carries more than its key has now (a key's scopes may have been narrowed since).
  const scopes = scopesOf(Number(bits)).filter((scope) => record.scopes.includes(scope))
  return {
    principal: {
      keyId,
      keyHash: record.hash,
      scopes,
      rateLimit: record.rateLimit,
      maxCount: record.maxCount,
      credential: 'token',
    },
    expiresMs: Number(expires) * 1000,
  }
}
