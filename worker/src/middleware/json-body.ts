/**
 * @module middleware/json-body
 * Reads a JSON body with the checks zValidator lacks: 415 for other media types, 413 both from
 * Content-Length and while streaming (a lying or absent Content-Length cannot bypass it), 400 for
 * malformed JSON. Values are validated afterwards by the route's zod schema (422).
 */
import type { Context } from 'hono'
import { BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../errors.ts'

/** Parses the request body as JSON, enforcing `maxBytes` before and while reading. */
export async function readJsonBody(c: Context, maxBytes: number): Promise<unknown> {
  const type = c.req.header('Content-Type')
  const mediaType = type?.split(';')[0]?.trim().toLowerCase()
  if (mediaType !== 'application/json' && !mediaType?.endsWith('+json')) {
    throw new UnsupportedMediaTypeError(type)
  }
  const declared = c.req.header('Content-Length')
  if (declared !== undefined && Number(declared) > maxBytes)
    throw new PayloadTooLargeError(maxBytes)
  const body = c.req.raw.body
  if (!body) throw new BadRequestError('malformed_json', 'Request body is empty; expected JSON')
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > maxBytes) {
      await reader.cancel()
      throw new PayloadTooLargeError(maxBytes)
    }
    chunks.push(value)
  }
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
