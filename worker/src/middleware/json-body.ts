/**
 * @module middleware/json-body
 * Reads a JSON body with the checks zValidator lacks: 415 for other media types and charsets than
 * UTF-8, 413 both from
 * Content-Length and while streaming (a lying or absent Content-Length cannot bypass it), 400 for
 * malformed JSON, 408 for a body that has not arrived within {@link BODY_TIMEOUT_MS}, and a typed 400
 * (not an unhandled 500) when the client hangs up mid-upload. Values are validated afterwards by the
 * route's zod schema (422).
 */
import type { Context } from 'hono'
import {
  ApiError,
  BadRequestError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
} from '../errors.ts'

/** A request body (≤ 16 KiB) not read in full by then is refused: slow uploads hold an isolate. */
export const BODY_TIMEOUT_MS = 10_000

/**
 * Reads every chunk of `body` (at most `maxBytes`) within {@link BODY_TIMEOUT_MS}. A stream that
 * errors is the client hanging up: a 400 `request_aborted` nobody will read, but no 500.
 */
async function readChunks(body: ReadableStream<Uint8Array>, maxBytes: number) {
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = body.getReader()
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ApiError(
            408,
            'request_timeout',
            `Request body not received within ${BODY_TIMEOUT_MS} ms`,
            {
              headers: { Connection: 'close' },
            },
          ),
        ),
      BODY_TIMEOUT_MS,
    )
  })
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), timeout])
      if (done) break
      total += value.byteLength
      if (total > maxBytes) throw new PayloadTooLargeError(maxBytes)
      chunks.push(value)
    }
  } catch (error) {
    await reader.cancel().catch(() => undefined)
    if (error instanceof ApiError) throw error
    throw new BadRequestError('request_aborted', 'The request body ended early (connection lost)')
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
  return { chunks, total }
}

/** Parses the request body as JSON, enforcing `maxBytes` before and while reading. */
export async function readJsonBody(c: Context, maxBytes: number): Promise<unknown> {
  const type = c.req.header('Content-Type')
  const mediaType = type?.split(';')[0]?.trim().toLowerCase()
  if (mediaType !== 'application/json' && !mediaType?.endsWith('+json')) {
    throw new UnsupportedMediaTypeError(type)
  }
  // JSON is UTF-8 (RFC 8259 §8.1): a body declared in another charset would be misread, not decoded.
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(type ?? '')?.[1]?.toLowerCase()
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new UnsupportedMediaTypeError(type)
  }
  const declared = c.req.header('Content-Length')
  if (declared !== undefined && Number(declared) > maxBytes)
    throw new PayloadTooLargeError(maxBytes)
  const body = c.req.raw.body
  if (!body) throw new BadRequestError('malformed_json', 'Request body is empty; expected JSON')
  const { chunks, total } = await readChunks(body, maxBytes)
  const bytes = new Uint8Array(total)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes)
  } catch {
    throw new BadRequestError('malformed_json', 'Request body is not valid UTF-8')
  }
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new BadRequestError(
      'malformed_json',
      `Malformed JSON in request body: ${(error as Error).message}`,
    )
  }
}
