/**
 * @module revocations
 * What this isolate knows about revoked keys before KV tells it. A key revoked through this isolate
 * (`DELETE /v1/keys/:id`) is refused here at once and its open event streams here end at once. Other
 * isolates learn it from KV: within {@link KEY_MEMO_MS} (their memo of the key) after KV has
 * propagated the change (≤ 60 s), and their open streams re-check the key at every keepalive.
 */

/** Hashes of keys revoked through this isolate (bounded: a revoked key is refused by KV soon anyway). */
const revokedHashes = new Set<string>()
const MAX_REVOKED = 10_000
/** Open event streams per key id, to end when that key is revoked here. */
const listeners = new Map<string, Set<() => void>>()

/** True when the key with this hash was revoked through this isolate. */
export const isRevokedHere = (keyHash: string) => revokedHashes.has(keyHash)

/** Records a revocation made here and ends this key's open streams. */
export function revokeHere(keyId: string, keyHash: string): void {
  if (revokedHashes.size >= MAX_REVOKED) revokedHashes.clear()
  revokedHashes.add(keyHash)
  const waiting = listeners.get(keyId)
  listeners.delete(keyId)
  for (const listener of waiting ?? []) listener()
}

/** Calls `listener` once if `keyId` is revoked through this isolate; returns the unsubscribe. */
export function onRevokedHere(keyId: string, listener: () => void): () => void {
  const set = listeners.get(keyId) ?? new Set()
  set.add(listener)
  listeners.set(keyId, set)
  return () => {
    set.delete(listener)
    if (set.size === 0 && listeners.get(keyId) === set) listeners.delete(keyId)
  }
}

/** What an event stream of a revoked key ends with (its `error` event). */
export const KEY_REVOKED = {
  code: 'key_revoked',
  message: 'This API key was revoked; the stream ends here',
} as const
