/**
 * @module hono-env
 * The Hono environment shared by every route and middleware.
 */
import type { TimingVariables } from 'hono/timing'
import type { Env, Settings } from './env.ts'
import type { Principal } from './keys.ts'

export interface AppEnv {
  Bindings: Env
  Variables: TimingVariables & {
    requestId: string
    settings: Settings
    principal: Principal
    /** the parsed JSON body (middleware/json-body.ts), before the route's schema checks it */
    jsonBody: unknown
  }
}
