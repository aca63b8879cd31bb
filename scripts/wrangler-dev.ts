/**
 * @module wrangler-dev
 * `wrangler dev` for the local stack (scripts/local-stack.ts `startWorker`), through wrangler's own
 * programmatic entry (`unstable_startWorker`, what the CLI runs) so that the channels a local process
 * could use to take the stack over are closed — the CLI can turn none of them off except by env:
 *
 * - the Local Explorer (`/cdn-cgi/local/explorer/api`: read and write KV, R2 and Durable Object
 *   storage) and local observability (stored request URLs), both served on the API port itself;
 * - the devtools inspectors (wrangler's proxy and workerd's own), which evaluate any expression in the
 *   worker, secrets included; opt in with `PIFLOW_INSPECTOR_PORT=<port>` when debugging;
 * - R2's public-bucket route (`/cdn-cgi/local/r2/public/<bucket>/<key>`, unsigned reads), which
 *   wrangler always serves: the local bucket is named by `PIFLOW_LOCAL_R2_BUCKET` (env, not argv),
 *   a name derived from the signing secret, so the route answers only whoever holds that secret;
 * - state files readable by other users (KV holds key hashes, R2 the images): everything it and
 *   workerd create is private (umask 077), the state directory 0700.
 *
 * Stops the worker (and workerd) on SIGTERM, SIGINT and SIGHUP, and when its parent process dies.
 *
 * Usage: node --import tsx scripts/wrangler-dev.ts --port N --persist-to DIR --env-file FILE
 *        [--assets DIR] [--add-model ID …] [--var NAME:VALUE …]
 *
 * `--assets` serves another staged model-assets directory than wrangler.toml's; `--add-model` serves
 * these ids after the config's PIFLOW_MODELS (its first stays the default model), so callers add
 * models without naming the configured ones.
 */
import { chmodSync, mkdirSync } from 'node:fs'
import { parseArgs } from 'node:util'

// Read by wrangler when it builds the Miniflare options; set before it is loaded.
process.env.X_LOCAL_EXPLORER = 'false'
process.env.X_LOCAL_OBSERVABILITY = 'false'
// Offline: no login, no metrics, no Request.cf fetch (shared/notes/toolchain.md).
process.env.CI = 'true'
process.env.WRANGLER_SEND_METRICS = 'false'
process.env.CLOUDFLARE_CF_FETCH_ENABLED = 'false'
// Inherited by workerd, which writes the KV, R2 and Durable Object files.
process.umask(0o077)

const { values } = parseArgs({
  options: {
    config: { type: 'string', default: 'wrangler.toml' },
    port: { type: 'string' },
    'persist-to': { type: 'string' },
    'env-file': { type: 'string' },
    assets: { type: 'string' },
    'add-model': { type: 'string', multiple: true, default: [] },
    var: { type: 'string', multiple: true, default: [] },
  },
  strict: true,
})

/** `NAME:VALUE` pairs as wrangler plain-text bindings (what `wrangler dev --var` makes). */
function plainTextVars(pairs: string[]): Record<string, { type: 'plain_text'; value: string }> {
  const out: Record<string, { type: 'plain_text'; value: string }> = {}
  for (const pair of pairs) {
    const colon = pair.indexOf(':')
    if (colon <= 0) throw new Error(`--var expects NAME:VALUE, got ${JSON.stringify(pair)}`)
    out[pair.slice(0, colon)] = { type: 'plain_text', value: pair.slice(colon + 1) }
  }
  return out
}

/** The inspector only when asked for: it evaluates any expression inside the worker. */
function inspectorOption(): false | { hostname: string; port: number } {
  const port = process.env.PIFLOW_INSPECTOR_PORT
  if (!port) return false
  return { hostname: '127.0.0.1', port: Number(port) }
}

const persistTo = values['persist-to']
if (persistTo) {
  mkdirSync(persistTo, { recursive: true })
  // One made before (by an older version, or with another umask) becomes private too.
  chmodSync(persistTo, 0o700)
}
const bucket = process.env.PIFLOW_LOCAL_R2_BUCKET
const { experimental_readRawConfig, unstable_startWorker } = await import('wrangler')

/** PIFLOW_MODELS: the config's list followed by `--add-model` ids (a `--var` still wins). */
function modelsVar(added: string[]): Record<string, { type: 'plain_text'; value: string }> {
  if (added.length === 0) return {}
  const { rawConfig } = experimental_readRawConfig({ config: values.config })
  const configured = String(rawConfig.vars?.PIFLOW_MODELS ?? '')
    .split(',')
    .map((id) => id.trim())
    .filter(Boolean)
  const ids = [...configured, ...added.filter((id) => !configured.includes(id))]
  return { PIFLOW_MODELS: { type: 'plain_text', value: ids.join(',') } }
}

const worker = await unstable_startWorker({
  config: values.config,
  ...(values['env-file'] ? { envFiles: [values['env-file']] } : {}),
  ...(values.assets ? { assets: values.assets } : {}),
  bindings: {
    ...modelsVar(values['add-model']),
    ...plainTextVars(values.var),
    ...(bucket ? { IMAGES: { type: 'r2_bucket', bucket_name: bucket } } : {}),
  },
  dev: {
    server: { hostname: '127.0.0.1', port: Number(values.port ?? 8787) },
    inspector: inspectorOption(),
    ...(persistTo ? { persist: persistTo } : {}),
    watch: false,
  },
})

/** How long disposing may take (it can hang after a failed start); the caller kills the group. */
const DISPOSE_GRACE_MS = 5000
let stopping: Promise<void> | undefined
function stop(code: number): Promise<void> {
  const grace = new Promise<void>((resolve) => setTimeout(resolve, DISPOSE_GRACE_MS).unref())
  stopping ??= Promise.race([worker.dispose(), grace]).finally(() => process.exit(code))
  return stopping
}
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => stop(0))
// Orphaned (the stack's process was killed without a chance to stop us): stop serving too.
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) void stop(0)
}, 1000).unref()

/** wrangler reports start-up failures (a port already taken) as events, while `ready` just waits. */
function failedToStart(): Promise<never> {
  return new Promise((_, reject) => {
    worker.raw.on('error', (event: { reason?: string; cause?: unknown; message?: string }) => {
      const cause = event.cause instanceof Error ? `: ${event.cause.message}` : ''
      reject(new Error(`${event.reason ?? event.message ?? 'error'}${cause}`))
    })
  })
}

try {
  await Promise.race([worker.ready, failedToStart()])
} catch (error) {
  console.error(`wrangler dev failed: ${(error as Error).message}`)
  await stop(1)
}
console.log(`piflow-worker ready on ${(await worker.url).origin}`)
