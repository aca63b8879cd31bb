/**
 * @module middleware/json-body
 * A JSON request body with the checks hono's validator lacks (it turns a non-JSON body into `{}`):
 * 415 for other media types and for charsets other than UTF-8; 413 by hono's `bodyLimit`, from
 * Content-Length before a byte is read and while streaming a body without one (memory never grows past
 * the limit); 408 for a body that has not arrived within {@link BODY_TIMEOUT_MS}; a typed 400
 * `request_aborted` (not an unhandled 500) when the client hangs up mid-upload; 400 for an empty body,
 * invalid UTF-8 or malformed JSON. The parsed value is `c.var.jsonBody`; the route's zod schema then
 * validates it (422).
 */
import { guardBody } from '@piflow/protocol'
import type { Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { createMiddleware } from 'hono/factory'
import {
  ApiError,
  BadRequestError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
} from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'

/** A request body (≤ 16 KiB) not read in full by then is refused: slow uploads hold an isolate. */
export const BODY_TIMEOUT_MS = 10_000

/** `application/json` or any `+json` type in UTF-8, else 415. */
function requireJsonMediaType(c: Context): void {
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
}

/** The body (already within the limit) as JSON. */
async function parseJson(request: Request): Promise<unknown> {
  if (!request.body)
    throw new BadRequestError('malformed_json', 'Request body is empty; expected JSON')
  const bytes = await request.arrayBuffer()
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

/** The request with a body that fails as 408 on a stall and as 400 `request_aborted` on a hang-up. */
function guardJsonBody(request: Request): Request {
  return guardBody(request, {
    timeoutMs: BODY_TIMEOUT_MS,
    onTimeout: () =>
      new ApiError(
        408,
        'request_timeout',
        `Request body not received within ${BODY_TIMEOUT_MS} ms`,
        {
          headers: { Connection: 'close' },
        },
      ),
    onAbort: () =>
      new BadRequestError('request_aborted', 'The request body ended early (connection lost)'),
  })
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
    c.req.raw = guardJsonBody(c.req.raw)
    await limit(c, async () => {
      c.set('jsonBody', await parseJson(c.req.raw))
      await next()
    })
  })
}
