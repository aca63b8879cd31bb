/**
 * @module routes/webhook-secret
 * `GET /v1/webhook-secret`: the calling key's webhook signing secret (`whsec_…`, webhooks.ts), to
 * verify deliveries with any Standard Webhooks library. Derived, so it is the same on every call and
 * isolate, and changes only with the key; a client token cannot read it (403 `forbidden`).
 */
import { Hono } from 'hono'
import { ForbiddenError } from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'
import { auth } from '../middleware/auth.ts'
import { webhookSecret } from '../webhooks.ts'

export const webhookSecretRoute = new Hono<AppEnv>()

webhookSecretRoute.get('/', auth(), async (c) => {
  const { principal, settings } = c.var
  if (principal.credential === 'token') {
    throw new ForbiddenError('A client token cannot read the webhook secret; use the API key')
  }
  c.header('Cache-Control', 'no-store')
  return c.json({
    secret: await webhookSecret(settings.signingSecret, principal.keyId, principal.keyHash),
  })
})
