/**
 * @module body
 * Reads a request body with a hard size limit: a declared Content-Length over the limit is refused
 * before a byte is read, and a body without one (chunked) or one that lies is counted while it streams
 * and refused the moment it passes the limit — memory is never allocated beyond the limit. A body
 * that has not arrived within the request's deadline is a 408; a client that hangs up mid-upload is
 * 499 `cancelled` (nobody reads it), not an internal error with a stack in the log.
 */

import { BackendError } from './errors.ts'

/** Reads `request`'s body (at most `maxBytes`) within `timeoutMs`. */
export async function readBody(
  request: Request,
  maxBytes: number,
  timeoutMs: number,
): Promise<Uint8Array> {
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
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new BackendError(408, 'request_timeout', `body not received within ${timeoutMs} ms`, {
          headers: { Connection: 'close' },
        }),
      )
    }, timeoutMs)
  })
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), timeout])
      if (done) break
      received += value.byteLength
      if (received > maxBytes) throw tooLarge('more than that')
      chunks.push(value)
    }
  } catch (error) {
    await reader.cancel().catch(() => {})
    if (error instanceof BackendError) throw error
    throw new BackendError(499, 'cancelled', 'the client hung up before its body arrived')
  } finally {
    clearTimeout(timer)
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
