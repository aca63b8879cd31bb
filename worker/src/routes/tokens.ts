/**
 * @module routes/tokens
 * `POST /v1/tokens`: a server holding an API key mints a short-lived client token for a browser
 * (tokens.ts). Only a key mints: a token cannot mint another (403 `token_cannot_mint`), so a leaked
 * token never outlives its TTL. The scopes asked for must be the key's (403 `forbidden` otherwise).
 */
import { Hono } from 'hono'
import { ApiError, ForbiddenError, ValidationError } from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'
import { auth } from '../middleware/auth.ts'
import { jsonBody } from '../middleware/json-body.ts'
import { fieldErrors, MAX_BODY_BYTES, tokenRequestSchema } from '../schemas.ts'
import { DEFAULT_TOKEN_SCOPES, mintClientToken } from '../tokens.ts'

export const tokens = new Hono<AppEnv>()

tokens.post('/', auth(), jsonBody(MAX_BODY_BYTES), async (c) => {
  const { principal, settings } = c.var
  if (principal.credential === 'token') {
    throw new ApiError(
      403,
      'token_cannot_mint',
      'Client tokens cannot mint tokens; use the API key',
    )
  }
  const parsed = tokenRequestSchema.safeParse(c.var.jsonBody)
  if (!parsed.success) throw new ValidationError(fieldErrors(parsed.error))
  const { ttlSeconds } = parsed.data
  const asked = parsed.data.scopes
  const missing = (asked ?? []).filter((scope) => !principal.scopes.includes(scope))
  if (missing.length > 0) {
    throw new ForbiddenError(`This API key lacks the scope(s) ${missing.join(', ')}`)
  }
  const scopes = asked ?? DEFAULT_TOKEN_SCOPES.filter((scope) => principal.scopes.includes(scope))
  if (scopes.length === 0) {
    throw new ForbiddenError(
      'This API key has none of the generation scopes a default token carries',
    )
  }
  const minted = await mintClientToken(settings.signingSecret, principal, scopes, ttlSeconds)
  c.header('Cache-Control', 'no-store')
  return c.json(minted, 201)
})
