/**
 * @module middleware/auth
 * Bearer authentication with per-route scopes: an API key (KV holds hashes only, keys.ts) or a client
 * token minted with one (tokens.ts), which acts as its key with fewer scopes until it expires. In local
 * mode the dev key from PIFLOW_DEV_API_KEY is seeded into KV on first use (never outside local mode).
 */
import type { Context } from 'hono'
import { createMiddleware } from 'hono/factory'
import { endTime, startTime } from 'hono/timing'
import { ApiError, BadRequestError, ForbiddenError, UnauthorizedError } from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'
import {
  apiKeyRecordSchema,
  createApiKeyRecord,
  type Principal,
  parseApiKey,
  SCOPES,
  type Scope,
  verifyApiKey,
} from '../keys.ts'
import { onRevokedHere } from '../revocations.ts'
import { TOKEN_PREFIX, verifyClientToken } from '../tokens.ts'

const seeded = new Set<string>()

/**
 * Writes the dev key's record unless KV already holds one for this very key: a record that is
 * missing, unreadable or for another key (a new dev key) is replaced; this key's own record, revoked
 * or edited, is kept, so `keys.ts revoke` survives the next start.
 */
async function seedDevKey(kv: KVNamespace, devKey: string): Promise<void> {
  if (seeded.has(devKey)) return
  const parsed = parseApiKey(devKey)
  if (!parsed) throw new Error('PIFLOW_DEV_API_KEY must look like pf_<id>_<secret>')
  const record = await createApiKeyRecord(devKey, {
    name: 'local development key',
    scopes: [...SCOPES],
  })
  const stored = apiKeyRecordSchema.safeParse(await kv.get(`key:${parsed.keyId}`, 'json')).data
  if (stored?.hash !== record.hash) await kv.put(`key:${parsed.keyId}`, JSON.stringify(record))
  seeded.add(devKey)
}

/** The principal of a presented key or token (an expired token says so); undefined when refused. */
async function verifyCredential(
  c: Context<AppEnv>,
  presented: string,
): Promise<{ principal: Principal; expired: boolean } | undefined> {
  if (presented.startsWith(TOKEN_PREFIX)) {
    return verifyClientToken(c.env.API_KEYS, c.var.settings.signingSecret, presented)
  }
  const principal = await verifyApiKey(c.env.API_KEYS, presented)
  return principal && { principal, expired: false }
}

/** Requires a valid key or token (carrying `scope` when given); sets `c.var.principal`. */
export const auth = (scope?: Scope) =>
  createMiddleware<AppEnv>(async (c, next) => {
    const { devApiKey } = c.var.settings
    if (devApiKey) await seedDevKey(c.env.API_KEYS, devApiKey)
    const header = c.req.header('Authorization')
    if (header === undefined) {
      if (c.req.query('api_key') !== undefined || c.req.query('key') !== undefined) {
        throw new BadRequestError(
          'credentials_in_query',
          'API keys are not accepted in the URL; send Authorization: Bearer <key>',
        )
      }
      throw new UnauthorizedError()
    }
    const match = /^Bearer +([\x21-\x7e]{1,256})\s*$/i.exec(header)
    if (!match) {
      throw new BadRequestError(
        'malformed_authorization',
        'Authorization header must be "Bearer <key>"',
      )
    }
    startTime(c, 'auth')
    const verified = await verifyCredential(c, match[1]!)
    endTime(c, 'auth')
    if (!verified) throw new UnauthorizedError('Unknown, revoked or malformed API key or token')
    if (verified.expired) {
      throw new ApiError(401, 'token_expired', 'This client token has expired; mint a new one', {
        headers: { 'WWW-Authenticate': 'Bearer realm="piflow", error="invalid_token"' },
      })
    }
    const { principal } = verified
    if (scope && !principal.scopes.includes(scope)) {
      throw new ForbiddenError(
        `This ${principal.credential === 'token' ? 'token' : 'API key'} lacks the "${scope}" scope`,
      )
    }
    c.set('principal', principal)
    await next()
  })

/** What {@link watchRevocation} returns. */
export interface RevocationWatch {
  /** resolves once the caller's key is no longer valid */
  revoked: Promise<void>
  stop(): void
}

/**
 * Watches the caller's key while a long response (an event stream) runs: `revoked` resolves at once
 * when the key is revoked through this isolate, else at the first re-check against KV (every
 * `intervalMs`, through the key memo) that refuses it. A client token's stream follows its key the same
 * way; the token expiring does not end a stream it opened.
 */
export function watchRevocation(c: Context<AppEnv>, intervalMs: number): RevocationWatch {
  const { keyId } = c.var.principal
  const token = /^Bearer +(\S+)/i.exec(c.req.header('Authorization') ?? '')?.[1] ?? ''
  let stop = () => {}
  const revoked = new Promise<void>((resolve) => {
    const unsubscribe = onRevokedHere(keyId, resolve)
    const timer = setInterval(async () => {
      if (!(await verifyCredential(c, token).catch(() => true))) resolve()
    }, intervalMs)
    stop = () => {
      unsubscribe()
      clearInterval(timer)
    }
  })
  revoked.then(() => stop())
  return { revoked, stop: () => stop() }
}
