/**
 * @module hono-env
 * The Hono environment shared by every route and middleware.
 */
import type { Env, Settings } from './env.ts'
import type { Principal } from './keys.ts'

export interface AppEnv {
  Bindings: Env
  Variables: {
    requestId: string
    settings: Settings
    principal: Principal
  }
}
