/**
 * @module middleware/json-body
 * A JSON request body with the checks hono's validator lacks (it turns a non-JSON body into `{}`):
 * 415 for other media types; 413 by hono's `bodyLimit`, from Content-Length before a byte is read and
 * while streaming a body without one (memory never grows past the limit); 400 for an empty body,
 * invalid UTF-8 or malformed JSON. The parsed value is `c.var.jsonBody`; the route's zod schema then
 * validates it (422).
 */
import type { Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { createMiddleware } from 'hono/factory'
import { BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'

/** `application/json` or any `+json` type, else 415. */
function requireJsonMediaType(c: Context): void {
  const type = c.req.header('Content-Type')
  const mediaType = type?.split(';')[0]?.trim().toLowerCase()
  if (mediaType !== 'application/json' && !mediaType?.endsWith('+json')) {
    throw new UnsupportedMediaTypeError(type)
  }
}

/** The body (already within the limit) as JSON. */
async function parseJson(request: Request): Promise<unknown> {
  if (!request.body)
    throw new BadRequestError('malformed_json', 'Request body is empty; expected JSON')
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(
      await request.arrayBuffer(),
    )
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

/** Parses a JSON body of at most `maxBytes` into `c.var.jsonBody`. */
export const jsonBody = (maxBytes: number) => {
  const limit = bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new PayloadTooLargeError(maxBytes)
    },
  })
  return createMiddleware<AppEnv>(async (c, next) => {
    requireJsonMediaType(c)
    await limit(c, async () => {
      c.set('jsonBody', await parseJson(c.req.raw))
      await next()
    })
  })
}
