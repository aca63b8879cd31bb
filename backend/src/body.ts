/**
 * @module body
 * Reads a request body with a hard size limit: a declared Content-Length over the limit is refused
 * before a byte is read, and a body without one (chunked) or one that lies is counted while it streams
 * and refused the moment it passes the limit — memory is never allocated beyond the limit.
 */

import { BackendError } from './errors.ts'

/** Reads `request`'s body (at most `maxBytes`), aborting with the request's signal. */
export async function readBody(request: Request, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new BackendError(
      413,
      'payload_too_large',
      `body of ${size} exceeds the limit of ${maxBytes} bytes`,
      {
        headers: { Connection: 'close' },
      },
    )
  const declared = request.headers.get('content-length')
  let expected: number | undefined
  if (declared !== null) {
    expected = Number(declared)
    if (!Number.isSafeInteger(expected) || expected < 0) {
      throw new BackendError(400, 'invalid_value', 'Content-Length is not a byte count')
    }
    if (expected > maxBytes) throw tooLarge(`${expected} bytes`)
  }
  if (request.body === null) return new Uint8Array(0)

  // Chunks are kept and joined once at the end; the running count bounds the memory held.
  const chunks: Uint8Array[] = []
  let received = 0
  const reader = request.body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      received += value.byteLength
      if (received > maxBytes) throw tooLarge('more than that')
      chunks.push(value)
    }
  } catch (error) {
    await reader.cancel().catch(() => {})
    throw error
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array
  const out = new Uint8Array(received)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.byteLength
  }
  return out
}
