/**
 * @module keys
 * API keys: `pf_<keyId>_<secret>`. KV holds only `key:<keyId>` → {@link ApiKeyRecord} with the SHA-256
 * of the whole key; the key itself is never stored. Lookup is by id, the hash compare is constant-time.
 */
import { sha256Hex, timingSafeEqualStrings } from './crypto.ts'
import { type ApiKeyRecord, apiKeyRecordSchema, parseApiKey, type Scope } from './key-record.ts'
import { isRevokedHere, revokeHere } from './revocations.ts'

export {
  type ApiKeyRecord,
  apiKeyRecordSchema,
  createApiKeyRecord,
  parseApiKey,
  SCOPES,
  type Scope,
} from './key-record.ts'

/** The authenticated caller, as the handlers see it. */
export interface Principal {
  keyId: string
  /** sha256 of the presented key */
  keyHash: string
  scopes: readonly Scope[]
  rateLimit: ApiKeyRecord['rateLimit']
  maxCount: number | undefined
  /** how the caller authenticated: the API key itself, or a client token minted with it (tokens.ts) */
  credential: 'key' | 'token'
}

// Compared against when the key id is unknown, so unknown ids cost the same as wrong secrets.
const DUMMY_HASH = '0'.repeat(64)

/**
 * How long an isolate trusts a key record it read. KV itself propagates changes within ~60 s, so a
 * short memo costs no consistency we had and saves a KV read on every request.
 */
export const KEY_MEMO_MS = 10_000
const memo = new Map<string, { principal: Principal; until: number }>()

/**
 * Resolves a presented key to its principal, or `undefined` if unknown, revoked or wrong.
 * The hash compare runs even when the id is unknown so timing does not reveal which ids exist.
 */
export async function verifyApiKey(kv: KVNamespace, key: string): Promise<Principal | undefined> {
  const presentedHash = await sha256Hex(key)
  if (isRevokedHere(presentedHash)) return undefined
  const hit = memo.get(presentedHash)
  if (hit && hit.until > Date.now()) return hit.principal
  const principal = await lookupApiKey(kv, key, presentedHash)
  if (principal) {
    if (memo.size > 1000) memo.clear()
    memo.set(presentedHash, { principal, until: Date.now() + KEY_MEMO_MS })
  }
  return principal
}

async function lookupApiKey(
  kv: KVNamespace,
  key: string,
  presentedHash: string,
): Promise<Principal | undefined> {
  const parsed = parseApiKey(key)
  const raw = parsed ? await kv.get(`key:${parsed.keyId}`, 'json') : null
  const record = raw === null ? undefined : apiKeyRecordSchema.safeParse(raw).data
  const ok = await timingSafeEqualStrings(presentedHash, record?.hash ?? DUMMY_HASH)
  if (!ok || !parsed || !record || record.revoked) return undefined
  return {
    keyId: parsed.keyId,
    keyHash: presentedHash,
    scopes: record.scopes,
    rateLimit: record.rateLimit,
    maxCount: record.maxCount,
    credential: 'key',
  }
}

/**
 * Revokes the caller's own key: KV's record gets `revoked: true` (kept, like `keys.ts revoke`), and
 * this isolate refuses the key and ends its open streams at once (revocations.ts).
 */
export async function revokeApiKey(kv: KVNamespace, principal: Principal): Promise<void> {
  const key = `key:${principal.keyId}`
  const record = apiKeyRecordSchema.safeParse(await kv.get(key, 'json')).data
  if (record && record.hash === principal.keyHash && !record.revoked) {
    await kv.put(key, JSON.stringify({ ...record, revoked: true }))
  }
  memo.delete(principal.keyHash)
  revokeHere(principal.keyId, principal.keyHash)
}
