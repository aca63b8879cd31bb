/**
 * @module start
 * `npm start`: the local piflow stack. Starts the inference backend and the edge worker (`wrangler dev`,
 * offline), generates one real image through the worker into out/first.png, prints the URL, the dev
 * API key and ready-to-paste curl commands, then runs until Ctrl-C, SIGTERM or SIGHUP (stopping both
 * process groups). scripts/start.sh execs this process itself (not `npm start`, which would pass a
 * signal to its `sh -c` only and leave the stack serving).
 *
 * Env: PORT (worker port; default 8787, or a free one if taken), PIFLOW_BACKEND_PORT (default: any free
 * port), PIFLOW_STATE_DIR (default .wrangler: the secrets file and wrangler's state), PIFLOW_TORCH_MODELS
 * (comma-separated bundled ids or manifest paths: also start the PyTorch backend with them and route
 * them to it, e.g. `PIFLOW_TORCH_MODELS=pi-flux1-4nfe npm start` on a GPU host).
 * The dev key is kept in <state dir>/piflow-local.json (git-ignored) so it survives restarts.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  freePort,
  ROOT,
  randomApiKey,
  randomSecret,
  type Service,
  startBackend,
  startTorchBackend,
  startWorker,
} from './local-stack.ts'

interface LocalSecrets {
  devApiKey: string
  backendSecret: string
  signingSecret: string
}

/** Where the local stack keeps its secrets and state. */
const STATE_DIR = resolve(ROOT, process.env.PIFLOW_STATE_DIR ?? '.wrangler')

/** Secrets of this checkout's local stack, created once. */
function localSecrets(): LocalSecrets {
  const file = join(STATE_DIR, 'piflow-local.json')
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalSecrets>
    if (saved.devApiKey && saved.backendSecret && saved.signingSecret) return saved as LocalSecrets
  }
  const secrets = {
    devApiKey: randomApiKey('dev'),
    backendSecret: randomSecret(),
    signingSecret: randomSecret(),
  }
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 })
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 })
  return secrets
}

const log = (message: string) => console.log(`[piflow] ${message}`)

async function firstImage(workerUrl: string, apiKey: string): Promise<string> {
  const started = performance.now()
  const response = await fetch(`${workerUrl}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    // Unseeded, so it is never a cache hit: this proves the whole path (worker → backend) works.
    body: JSON.stringify({ prompt: 'grinning face with big eyes', size: 256 }),
    signal: AbortSignal.timeout(120_000),
  }).catch(async (error) => {
    throw new Error(`generation request failed: ${error.message}`)
  })
  const body = (await response.json()) as {
    images?: { url: string }[]
    seed?: number
    cached?: boolean
    timings?: { totalMs: number }
    integration?: string
    error?: { code: string; message: string }
  }
  if (!response.ok || !body.images?.[0]) {
    throw new Error(`generation failed (${response.status}): ${JSON.stringify(body.error ?? body)}`)
  }
  const image = await fetch(body.images[0].url)
  if (!image.ok) throw new Error(`image download failed: ${image.status}`)
  const png = new Uint8Array(await image.arrayBuffer())
  mkdirSync(join(ROOT, 'out'), { recursive: true })
  const path = join(ROOT, 'out/first.png')
  writeFileSync(path, png)
  log(
    `first image: ${path} (seed ${body.seed}, ${png.byteLength} bytes, ` +
      `${Math.round(performance.now() - started)} ms, integration ${body.integration}` +
      `${body.cached ? ', from cache' : ''})`,
  )
  return path
}

/** The model id of a `--model` argument of the PyTorch backend: a bundled id, or a manifest file's `id`. */
function torchModelId(model: string): string {
  if (!model.endsWith('.json')) return model
  return (JSON.parse(readFileSync(resolve(model), 'utf8')) as { id: string }).id
}

async function main() {
  const secrets = localSecrets()
  const services: Service[] = []
  let stopping = false
  /** The service being started, if any: a signal then stops it once it is up, not leave it behind. */
  let starting: Promise<unknown> = Promise.resolve()
  const stop = async (code: number) => {
    if (stopping) return
    stopping = true
    log('stopping…')
    await starting.catch(() => undefined)
    await Promise.all(services.reverse().map((s) => s.stop()))
    process.exit(code)
  }
  /** Registers a started service, so `stop` stops it; stops now if a signal came while it started. */
  const started = async <T extends Service>(pending: Promise<T>): Promise<T> => {
    starting = pending
    const service = await pending
    services.push(service)
    if (stopping) throw new Error('stopped while starting')
    return service
  }
  // A supervisor (systemd, docker stop, timeout) sends SIGTERM; a closed terminal SIGHUP.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => stop(0))

  try {
    log('starting the inference backend…')
    const backend = await started(
      startBackend({
        secret: secrets.backendSecret,
        port: Number(process.env.PIFLOW_BACKEND_PORT ?? 0),
        log: (line) => console.error(`  backend | ${line}`),
      }),
    )
    log(`backend ready at ${backend.url}`)
    const torchModels = (process.env.PIFLOW_TORCH_MODELS ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean)
    const torchIds = torchModels.map(torchModelId)
    const backends: { id: string; url: string; weight: number; models?: string[] }[] = [
      { id: 'local', url: backend.url, weight: 1 },
    ]
    if (torchModels.length > 0) {
      log(`starting the PyTorch backend (${torchModels.join(', ')}; a first start downloads)…`)
      const torch = await started(
        startTorchBackend({
          secret: secrets.backendSecret,
          models: torchModels.map((m) => (m.endsWith('.json') ? resolve(m) : m)),
          log: (line) => console.error(`  torch   | ${line}`),
        }),
      )
      log(`PyTorch backend ready at ${torch.url}`)
      backends.push({ id: 'torch', url: torch.url, weight: 1, models: torchIds })
    }
    log('starting the edge worker (wrangler dev, offline)…')
    const worker = await started(
      startWorker({
        backends,
        // After wrangler.toml's PIFLOW_MODELS, whose first model stays the default.
        addModels: torchIds,
        backendSecret: secrets.backendSecret,
        devApiKey: secrets.devApiKey,
        signingSecret: secrets.signingSecret,
        // 8787 (wrangler's default) unless taken, e.g. by another checkout's stack.
        port: process.env.PORT ? Number(process.env.PORT) : await freePort(8787),
        persistTo: join(STATE_DIR, 'state'),
        log: (line) => {
          if (/error|warn|exception/i.test(line)) console.error(`  worker  | ${line}`)
        },
      }),
    )
    log(`worker ready at ${worker.url}`)
    await firstImage(worker.url, secrets.devApiKey)

    const url = worker.url
    const key = secrets.devApiKey
    console.log(`
piflow is running.

  API        ${url}/v1   (OpenAPI: ${url}/openapi.json)
  dev key    ${key}
  models     ${url}/v1/models
  backend    ${backend.url}

JSON:
  curl -s ${url}/v1/generations \\
    -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' \\
    -d '{"prompt":"red apple","seed":7,"size":128}'

SSE (progress with previews, then the image):
  curl -N ${url}/v1/generations \\
    -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' \\
    -H 'Accept: text/event-stream' \\
    -d '{"prompt":"smiling cat face","seed":3}'

Result of an earlier generation:
  curl -s ${url}/v1/generations/<id> -H 'Authorization: Bearer ${key}'
${torchIds
  .map(
    (id) => `
${id} (PyTorch backend):
  curl -s ${url}/v1/generations \\
    -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' \\
    -d '{"model":"${id}","prompt":"a red apple on a table","seed":7}'
`,
  )
  .join('')}
Press Ctrl-C to stop.
`)
  } catch (error) {
    if (stopping) return
    console.error(`[piflow] failed: ${(error as Error).message}`)
    await stop(1)
  }
}

void main()
