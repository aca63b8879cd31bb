/**
 * @module env
 * The worker's bindings and the one place where string vars become typed, validated settings.
 */
import { z } from 'zod'
import type { Admission } from './durable/admission.ts'
import type { Ledger } from './durable/ledger.ts'
import type { RateLimiter } from './durable/rate-limiter.ts'
import type { WebhookOutbox } from './durable/webhook-outbox.ts'
import { ConfigError } from './errors.ts'

/** Bindings declared in wrangler.toml (plus secrets from `--var`, .dev.vars or `wrangler secret`). */
export interface Env {
  API_KEYS: KVNamespace
  IMAGES: R2Bucket
  RATE_LIMITER: DurableObjectNamespace<RateLimiter>
  LEDGER: DurableObjectNamespace<Ledger>
  ADMISSION: DurableObjectNamespace<Admission>
  WEBHOOKS: DurableObjectNamespace<WebhookOutbox>
  ASSETS: Fetcher
  PIFLOW_ENV?: string
  PIFLOW_MODELS?: string
  PIFLOW_BACKENDS?: string | BackendConfig[]
  PIFLOW_BACKEND_SECRET?: string
  PIFLOW_SIGNING_SECRET?: string
  PIFLOW_DEV_API_KEY?: string
  PIFLOW_INTEGRATION?: string
  PIFLOW_BACKEND_TIMEOUT_MS?: string
  PIFLOW_RATE_LIMIT?: string
  PIFLOW_SSE_KEEPALIVE_MS?: string
  PIFLOW_PUBLIC_ORIGIN?: string
  PIFLOW_QUEUE_LIMIT?: string
}

/** One inference backend the worker may route student forwards (or whole generations) to. */
export interface BackendConfig {
  id: string
  url: string
  weight: number
  /**
   * The models this backend serves; absent: every model without a backend of its own (the ONNX
   * backends). A PyTorch backend lists its `generate` models here, so no other model is sent to it.
   */
  models?: string[]
}

/** Where the policy rollout of each NFE segment runs. */
export type IntegrationMode = 'auto' | 'edge' | 'backend'

/** Settings derived once per isolate from the vars. */
export interface Settings {
  local: boolean
  /** PIFLOW_MODELS: the ids served, the default model first (never empty) */
  models: string[]
  backends: BackendConfig[]
  backendSecret: string
  signingSecret: string
  devApiKey: string | undefined
  integration: IntegrationMode
  backendTimeoutMs: number
  rateLimit: { limit: number; windowSeconds: number }
  /** idle proxies cut silent streams (~100 s at Cloudflare); comments every this many ms */
  sseKeepaliveMs: number
  /** origin of every absolute URL the worker emits; unset (local only): the request's own origin */
  publicOrigin: string | undefined
  /** generations that may wait per model once the backends' capacity is taken (0: none wait) */
  queueLimit: number
}

const backendList = z
  .array(
    z.object({
      id: z.string().min(1).optional(),
      url: z.url({ protocol: /^https?$/ }),
      weight: z.number().positive().default(1),
      models: z.array(z.string().min(1).max(64)).min(1).optional(),
    }),
  )
  .max(64)

function parseBackends(raw: Env['PIFLOW_BACKENDS']): BackendConfig[] {
  let value: unknown = raw ?? []
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      throw new ConfigError('PIFLOW_BACKENDS is not valid JSON')
    }
  }
  const parsed = backendList.safeParse(value)
  if (!parsed.success) throw new ConfigError(`PIFLOW_BACKENDS: ${parsed.error.issues[0]?.message}`)
  return parsed.data.map((b, i) => ({
    id: b.id ?? `backend-${i}`,
    url: b.url.replace(/\/+$/, ''),
    weight: b.weight,
    ...(b.models ? { models: b.models } : {}),
  }))
}

/**
 * The backends that serve `modelId`: those that list it, else those that list no models (so an ONNX
 * model never reaches a PyTorch backend, and a backend's own models never reach the others).
 */
export function backendsFor(backends: readonly BackendConfig[], modelId: string): BackendConfig[] {
  const listing = backends.filter((b) => b.models?.includes(modelId))
  return listing.length > 0 ? listing : backends.filter((b) => b.models === undefined)
}

function parseRateLimit(raw: string | undefined): Settings['rateLimit'] {
  const match = /^(\d+)\/(\d+)$/.exec(raw ?? '120/60')
  if (!match) throw new ConfigError('PIFLOW_RATE_LIMIT must look like "<units>/<seconds>"')
  return { limit: Number(match[1]), windowSeconds: Math.max(1, Number(match[2])) }
}

/**
 * `PIFLOW_PUBLIC_ORIGIN`, normalised to `scheme://host[:port]`. Required in production: signed image
 * URLs built from the request's Host would let whoever controls that header (a proxy, a second route)
 * point clients' image URLs at their own host.
 */
function parsePublicOrigin(raw: string | undefined, production: boolean): string | undefined {
  if (raw === undefined || raw.trim() === '') {
    if (production) {
      throw new ConfigError(
        'PIFLOW_PUBLIC_ORIGIN is required in production (e.g. https://api.example.com): image and model URLs are built from it',
      )
    }
    return undefined
  }
  let url: URL | undefined
  try {
    url = new URL(raw.trim())
  } catch {
    url = undefined
  }
  if (
    !url ||
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.pathname !== '/' ||
    url.search !== '' ||
    url.hash !== '' ||
    url.username !== '' ||
    url.password !== ''
  ) {
    throw new ConfigError(
      `PIFLOW_PUBLIC_ORIGIN must be an origin like https://api.example.com, got ${JSON.stringify(raw)}`,
    )
  }
  return url.origin
}

/**
 * PIFLOW_MODELS, the one place that names models: wrangler.toml's (per environment). Its first id is
 * the default model of a request that names none, so it has no fallback here, which would be a
 * second place naming a default.
 */
function parseModels(raw: string | undefined): string[] {
  const ids = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (ids.length === 0) {
    throw new ConfigError(
      'PIFLOW_MODELS is not set: list the model ids to serve, the default first',
    )
  }
  return ids
}

/** The model of a request that names none: the first of PIFLOW_MODELS. */
export const defaultModel = (settings: Pick<Settings, 'models'>): string => settings.models[0]!

function parseQueueLimit(raw: string | undefined): number {
  const value = raw === undefined || raw.trim() === '' ? 32 : Number(raw)
  if (!Number.isInteger(value) || value < 0 || value > 10_000) {
    throw new ConfigError('PIFLOW_QUEUE_LIMIT must be an integer 0 … 10000')
  }
  return value
}

const cache = new WeakMap<object, Settings>()

/** Typed settings for this env (memoised per env object, i.e. per isolate). */
export function settings(env: Env): Settings {
  const hit = cache.get(env)
  if (hit) return hit
  const local = env.PIFLOW_ENV === 'local'
  const integration = env.PIFLOW_INTEGRATION ?? 'auto'
  if (integration !== 'auto' && integration !== 'edge' && integration !== 'backend') {
    throw new ConfigError('PIFLOW_INTEGRATION must be auto, edge or backend')
  }
  const backendSecret = env.PIFLOW_BACKEND_SECRET ?? ''
  // Required in every mode: a fallback derived from config would be a constant anyone can read, and
  // `wrangler deploy` without `--env production` runs the top-level (local) settings. The local
  // stack always passes a random one.
  const signingSecret = env.PIFLOW_SIGNING_SECRET ?? ''
  if (!signingSecret) {
    throw new ConfigError(
      'PIFLOW_SIGNING_SECRET is not set (wrangler secret put PIFLOW_SIGNING_SECRET --env production)',
    )
  }
  const result: Settings = {
    local,
    models: parseModels(env.PIFLOW_MODELS),
    backends: parseBackends(env.PIFLOW_BACKENDS),
    backendSecret,
    signingSecret,
    devApiKey: local ? env.PIFLOW_DEV_API_KEY : undefined,
    integration,
    backendTimeoutMs: Math.max(100, Number(env.PIFLOW_BACKEND_TIMEOUT_MS ?? 30_000) || 30_000),
    rateLimit: parseRateLimit(env.PIFLOW_RATE_LIMIT),
    sseKeepaliveMs: Math.max(50, Number(env.PIFLOW_SSE_KEEPALIVE_MS ?? 15_000) || 15_000),
    publicOrigin: parsePublicOrigin(env.PIFLOW_PUBLIC_ORIGIN, env.PIFLOW_ENV === 'production'),
    queueLimit: parseQueueLimit(env.PIFLOW_QUEUE_LIMIT),
  }
  cache.set(env, result)
  return result
}
