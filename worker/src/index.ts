/**
 * @module index
 * The piflow edge worker: public API in front of the inference backends (ARCHITECTURE.md §3).
 */
import { Hono } from 'hono'
import { cors } from 'hono/cors'
import { HTTPException } from 'hono/http-exception'
import { secureHeaders } from 'hono/secure-headers'
import { timing } from 'hono/timing'
import './policy-kernel.ts' // before anything builds a policy
import { allowedMethods } from './allowed-methods.ts'
import { settings } from './env.ts'
import { ApiError, errorBody, NotFoundError } from './errors.ts'
import type { AppEnv } from './hono-env.ts'
import { requestId } from './middleware/request-id.ts'
import { openApiDocument } from './openapi.ts'
import { generations } from './routes/generations.ts'
import { health } from './routes/health.ts'
import { images } from './routes/images.ts'
import { keys } from './routes/keys.ts'
import { models } from './routes/models.ts'
import { tokens } from './routes/tokens.ts'
import { webhookSecretRoute } from './routes/webhook-secret.ts'

export { Admission } from './durable/admission.ts'
export { Ledger } from './durable/ledger.ts'
export { RateLimiter } from './durable/rate-limiter.ts'
export { WebhookOutbox } from './durable/webhook-outbox.ts'

/** The Hono app (exported for `app.request()` tests); the Worker's default export serves it. */
export const app = new Hono<AppEnv>()

app.use(requestId())
// nosniff, no framing, no referrer on every response. CORP is cross-origin, not Hono's same-origin
// default: pages on other origins embed the images and the browser SDK fetches the model files.
app.use(
  secureHeaders({
    crossOriginResourcePolicy: 'cross-origin',
    crossOriginOpenerPolicy: false,
    strictTransportSecurity: 'max-age=31536000; includeSubDomains',
  }),
)
// Server-Timing (auth, quota, cache, ledger, generate, backend, store, total) lets clients and the
// bench see where time goes.
app.use(timing({ crossOrigin: true }))
app.use(async (c, next) => {
  c.set('settings', settings(c.env))
  await next()
})
app.use(
  '/v1/*',
  cors({
    origin: '*',
    allowHeaders: [
      'Authorization',
      'Content-Type',
      'Idempotency-Key',
      'Accept',
      'X-Request-Id',
      'Prefer',
      'Last-Event-ID',
    ],
    exposeHeaders: [
      'X-Request-Id',
      'Retry-After',
      'RateLimit',
      'RateLimit-Policy',
      'Idempotent-Replayed',
      'ETag',
      'Location',
      'Preference-Applied',
    ],
    maxAge: 600,
  }),
)

app.route('/', health)
app.route('/v1/generations', generations)
app.route('/v1/models', models)
app.route('/v1/images', images)
app.route('/v1/keys', keys)
app.route('/v1/tokens', tokens)
app.route('/v1/webhook-secret', webhookSecretRoute)
app.get('/openapi.json', (c) => c.json(openApiDocument()))
app.get('/v1/openapi.json', (c) => c.json(openApiDocument()))

app.notFound((c) => {
  const path = new URL(c.req.url).pathname
  const allowed = allowedMethods(app.routes, path)
  if (allowed.length > 0) {
    const error = new ApiError(
      405,
      'method_not_allowed',
      `${c.req.method} is not allowed on ${path}`,
    )
    c.header('Allow', allowed.join(', '))
    return c.json(errorBody(error, c.get('requestId') ?? 'unknown'), 405)
  }
  const error = new NotFoundError(`No route ${c.req.method} ${path}`, 'route_not_found')
  return c.json(errorBody(error, c.get('requestId') ?? 'unknown'), 404)
})

// The one place errors become responses: typed ApiErrors keep their status/code, anything else is a
// 500 whose details stay in the logs.
app.onError((error, c) => {
  const id = c.get('requestId') ?? 'unknown'
  let apiError: ApiError
  if (error instanceof ApiError) apiError = error
  else if (error instanceof HTTPException) {
    apiError = new ApiError(error.status as 500, 'http_error', error.message)
  } else {
    console.error(`[${id}] unhandled`, error)
    apiError = new ApiError(500, 'internal_error', 'Internal error')
  }
  const response = c.json(errorBody(apiError, id), apiError.status)
  for (const [name, value] of Object.entries(apiError.headers)) response.headers.set(name, value)
  return response
})

export default app
