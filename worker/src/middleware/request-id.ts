/**
 * @module middleware/request-id
 * Every response carries a server-generated `X-Request-Id` (also in error bodies). A client-sent id is
 * echoed as `X-Client-Request-Id` but never trusted as ours (logs and idempotency rely on uniqueness).
 */
import { createMiddleware } from 'hono/factory'
import { randomToken } from '../crypto.ts'
import type { AppEnv } from '../hono-env.ts'

/** Sets `c.var.requestId` and the response header. */
export const requestId = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const id = `req_${randomToken(12)}`
    c.set('requestId', id)
    const clientId = c.req.header('X-Request-Id')
    await next()
    c.res.headers.set('X-Request-Id', id)
    if (clientId && /^[\w.=-]{1,128}$/.test(clientId)) {
      c.res.headers.set('X-Client-Request-Id', clientId)
    }
  })
