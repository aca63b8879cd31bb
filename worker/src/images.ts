/**
 * @module images
 * Generated images live in R2 under `images/<sha256>.png` (content-addressed, so cache hits and
 * replays share bytes). Clients get signed URLs `/v1/images/<sha256>.png?exp=<unix>&sig=<hmac>`:
 * anyone holding one may fetch the image until it expires (e.g. an `<img src>` without headers), but
 * ids alone are useless since a prompt + seed hash is guessable.
 */
import { hmac, timingSafeEqualStrings } from './crypto.ts'
import type { NormalizedRequest, StoredImage } from './records.ts'

/** URL lifetime window: URLs stay valid at least this long and at most twice as long. */
export const IMAGE_URL_TTL_SECONDS = 6 * 60 * 60

const NAME_PATTERN = /^[0-9a-f]{64}\.png$/

/** R2 key of an image by content hash. */
export const imageKey = (sha256: string) => `images/${sha256}.png`

/** The stored image `index` of a request (square, of the request's size), by its PNG's hash. */
export function storedImage(
  request: Pick<NormalizedRequest, 'seed' | 'size'>,
  index: number,
  sha256: string,
  bytes: number,
): StoredImage {
  return {
    index,
    seed: (request.seed + index) >>> 0,
    key: imageKey(sha256),
    width: request.size,
    height: request.size,
    sha256,
    bytes,
  }
}

/**
 * R2 writes of a generation's PNGs. The writes run concurrently; each image's `onStored` runs once
 * its URL can be fetched and after the previous image's, so SSE ids stay in order (a Last-Event-ID
 * resume relies on it).
 */
export function orderedImageWrites(
  bucket: R2Bucket,
  onStored?: (image: StoredImage, png: Uint8Array) => void | Promise<void>,
) {
  const writes: Promise<void>[] = []
  return {
    add(image: StoredImage, png: Uint8Array): void {
      const put = bucket.put(image.key, png, {
        httpMetadata: { contentType: 'image/png' },
        sha256: image.sha256,
      })
      const previous = writes.at(-1)
      writes.push(Promise.all([put, previous]).then(() => onStored?.(image, png)))
    },
    /** Settles when every write (and its `onStored`) has; rejects if one failed. */
    stored(): Promise<void> {
      const stored = Promise.all(writes).then(() => undefined)
      stored.catch(() => {}) // the caller awaits it; this only keeps an early failure unhandled-free
      return stored
    },
  }
}

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
