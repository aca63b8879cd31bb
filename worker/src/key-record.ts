/**
 * @module key-record
 * What KV stores per API key and how a key maps to it. Web-standard only (zod + WebCrypto), so
 * scripts/keys.ts mints records with exactly this code.
 */
import { z } from 'zod'
import { sha256Hex } from './hash.ts'

/**
 * Everything a key may be allowed to do. `models:read` is kept so existing records stay valid, but
 * nothing checks it: the model routes are public (the browser SDK downloads models without a key).
 */
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
