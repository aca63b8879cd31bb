/**
 * @module images
 * Generated images live in R2 under `images/<sha256>.png` (content-addressed, so cache hits and
 * replays share bytes). Clients get signed URLs `/v1/images/<sha256>.png?exp=<unix>&sig=<hmac>`:
 * anyone holding one may fetch the image until it expires (e.g. an `<img src>` without headers), but
 * ids alone are useless since a prompt + seed hash is guessable.
 */
import { hmac, timingSafeEqualStrings } from './crypto.ts'

/** URL lifetime window: URLs stay valid at least this long and at most twice as long. */
export const IMAGE_URL_TTL_SECONDS = 6 * 60 * 60

const NAME_PATTERN = /^[0-9a-f]{64}\.png$/

/** R2 key of an image by content hash. */
export const imageKey = (sha256: string) => `images/${sha256}.png`

/**
 * A signed URL for `images/<sha256>.png`. Expiry is aligned to TTL windows, so rendering the same
 * record twice within a window gives byte-identical JSON (idempotent replays, cacheable responses).
 */
export async function signImageUrl(
  origin: string,
  sha256: string,
  secret: string,
  nowMs = Date.now(),
): Promise<string> {
  const ttl = IMAGE_URL_TTL_SECONDS
  const exp = (Math.floor(nowMs / 1000 / ttl) + 2) * ttl
  const name = `${sha256}.png`
  const sig = await hmac(secret, `${name}.${exp}`)
  return `${origin}/v1/images/${name}?exp=${exp}&sig=${sig}`
}

/** Why a signed image URL was refused (all map to 403 except `not_found`). */
export type ImageUrlCheck = 'ok' | 'bad_name' | 'expired' | 'bad_signature'

/** Checks name, expiry and signature (constant-time). */
export async function verifyImageUrl(
  name: string,
  exp: string | undefined,
  sig: string | undefined,
  secret: string,
  nowMs = Date.now(),
): Promise<ImageUrlCheck> {
  if (!NAME_PATTERN.test(name)) return 'bad_name'
  if (!exp || !/^\d{1,12}$/.test(exp) || !sig) return 'bad_signature'
  const expected = await hmac(secret, `${name}.${exp}`)
  if (!(await timingSafeEqualStrings(expected, sig))) return 'bad_signature'
  if (Number(exp) * 1000 <= nowMs) return 'expired'
  return 'ok'
}
