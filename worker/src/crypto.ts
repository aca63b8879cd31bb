/**
 * @module crypto
 * Small WebCrypto helpers: hashing, HMAC signing and constant-time comparison.
 */

const encoder = new TextEncoder()

// Hashing lives in hash.ts, which Node scripts (scripts/keys.ts) import too.
export { sha256Hex, toHex } from './hash.ts'

/** Base64url without padding. */
export function base64Url(bytes: Uint8Array): string {
  let binary = ''
  for (const b of bytes) binary += String.fromCharCode(b)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** Standard base64 of bytes (chunked so large images do not overflow the argument stack). */
export function base64(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  }
  return btoa(binary)
}

/** Bytes of standard base64 (already checked to be base64). */
export function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

const hmacKeys = new Map<string, Promise<CryptoKey>>()

/** HMAC-SHA256 of `message` under `secret`, base64url. Keys are imported once per isolate. */
export async function hmac(secret: string, message: string): Promise<string> {
  let key = hmacKeys.get(secret)
  if (!key) {
    key = crypto.subtle.importKey(
      'raw',
      encoder.encode(secret),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    )
    hmacKeys.set(secret, key)
  }
  const signature = await crypto.subtle.sign('HMAC', await key, encoder.encode(message))
  return base64Url(new Uint8Array(signature))
}

/**
 * Constant-time string equality. Both sides are hashed first so the comparison never depends on the
 * inputs' lengths or contents (the same trick as hono's bearer-auth).
 */
export async function timingSafeEqualStrings(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest('SHA-256', encoder.encode(a)),
    crypto.subtle.digest('SHA-256', encoder.encode(b)),
  ])
  return crypto.subtle.timingSafeEqual(ha, hb) && a.length === b.length
}

/** A random url-safe token with `bytes` bytes of entropy. */
export function randomToken(bytes = 16): string {
  return base64Url(crypto.getRandomValues(new Uint8Array(bytes)))
}
