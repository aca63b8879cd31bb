/**
 * @module origin
 * The origin of absolute URLs the worker emits (signed image URLs, model file URLs).
 */
import type { Context } from 'hono'
import type { AppEnv } from './hono-env.ts'

/**
 * `PIFLOW_PUBLIC_ORIGIN` when set (always, in production: env.ts refuses to start without it); only
 * local development falls back to the request's own origin, i.e. whatever Host the client sent.
 */
export const publicOrigin = (c: Context<AppEnv>): string =>
  c.var.settings.publicOrigin ?? new URL(c.req.url).origin
