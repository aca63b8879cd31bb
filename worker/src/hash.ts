/**
 * @module hash
 * SHA-256 as lower-case hex. Only web-standard APIs, so Node scripts (scripts/keys.ts) hash API keys
 * with this very function rather than a lookalike.
 */

const encoder = new TextEncoder()

/** Lower-case hex of the bytes. */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)
  let out = ''
  for (const b of view) out += b.toString(16).padStart(2, '0')
  return out
}

/** SHA-256 of a string (UTF-8) or bytes, as lower-case hex. */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === 'string' ? encoder.encode(data) : data
  // (DOM's typings want an ArrayBuffer-backed view; digest reads any view.)
  return toHex(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>))
}
