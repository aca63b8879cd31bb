/**
 * @module routes/keys
 * `DELETE /v1/keys/:id`: an API key revokes itself (a leaked key's owner, a client rotating keys).
 * Immediate on the isolate that handles it (requests refused, open streams ended); elsewhere within
 * the key memo (10 s) after KV propagates (≤ 60 s). Operators revoke any key with
 * `scripts/keys.ts revoke`, which writes KV directly (the same bound everywhere).
 */
import { Hono } from 'hono'
import { ForbiddenError } from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'
import { revokeApiKey } from '../keys.ts'
import { auth } from '../middleware/auth.ts'

export const keys = new Hono<AppEnv>()

keys.delete('/:id', auth(), async (c) => {
  const { principal } = c.var
  if (principal.credential === 'token') {
    throw new ForbiddenError('A client token cannot revoke its key; use the API key itself')
  }
  if (c.req.param('id') !== principal.keyId) {
    throw new ForbiddenError(
      'An API key can revoke only itself; operators revoke others with scripts/keys.ts revoke',
    )
  }
  await revokeApiKey(c.env.API_KEYS, principal)
  return c.json({ id: principal.keyId, object: 'api_key' as const, revoked: true })
})
