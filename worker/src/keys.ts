/**
 * @module keys
 * API keys: `pf_<keyId>_<secret>`. KV holds only `key:<keyId>` → {@link ApiKeyRecord} with the SHA-256
 * of the whole key; the key itself is never stored. Lookup is by id, the hash compare is constant-time.
 */
import { z } from 'zod'
import { sha256Hex, timingSafeEqualStrings } from './crypto.ts'

/** Everything a key may be allowed to do. */
export const SCOPES = ['generations:write', 'generations:read', 'models:read'] as const
export type Scope = (typeof SCOPES)[number]

/** What KV stores per key (value of `key:<keyId>`). */
export const apiKeyRecordSchema = z.object({
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  name: z.string().optional(),
  scopes: z.array(z.enum(SCOPES)),
  /** overrides PIFLOW_RATE_LIMIT for this key: image units per window */
  rateLimit: z.object({ limit: z.int().min(0), windowSeconds: z.int().min(1) }).optional(),
  /** overrides the model's/API's max images per request */
  maxCount: z.int().min(1).optional(),
  revoked: z.boolean().optional(),
})
export type ApiKeyRecord = z.infer<typeof apiKeyRecordSchema>

/** The authenticated caller, as the handlers see it. */
export interface Principal {
  keyId: string
  scopes: readonly Scope[]
  rateLimit: ApiKeyRecord['rateLimit']
  maxCount: number | undefined
}

const KEY_PATTERN = /^pf_([a-z0-9]{1,32})_([A-Za-z0-9_-]{16,128})$/

/** Splits a presented key; `undefined` when it is not shaped like one of ours. */
export function parseApiKey(key: string): { keyId: string } | undefined {
  const match = KEY_PATTERN.exec(key)
  return match ? { keyId: match[1]! } : undefined
}

/** The KV value for a new key (what `wrangler kv key put key:<id> '<json>'` should store). */
export async function createApiKeyRecord(
  key: string,
  options: Omit<ApiKeyRecord, 'hash'>,
): Promise<ApiKeyRecord> {
  return { ...options, hash: await sha256Hex(key) }
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
    scopes: record.scopes,
    rateLimit: record.rateLimit,
    maxCount: record.maxCount,
  }
}
