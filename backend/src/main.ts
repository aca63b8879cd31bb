/**
 * @module main
 * CLI: `npx tsx backend/src/main.ts --port <p|0> --host 127.0.0.1 --models-dir models --secret <s>`.
 * Prints exactly one line on stdout, `piflow-backend listening on http://<host>:<port>`, once it serves;
 * every other line goes to stderr. SIGTERM / SIGINT shut it down gracefully.
 */

import { parseArgs } from 'node:util'
import { startBackend } from './backend.ts'
import { DEFAULT_OPTIONS, EXECUTION_PROVIDER_CHOICES, EXECUTION_PROVIDER_TEXT } from './options.ts'

const USAGE = `usage: main.ts [options]
  --port <n>                 port (0 = any free one)        env PIFLOW_BACKEND_PORT, default 8788
  --host <addr>              interface to listen on          default 127.0.0.1
  --models-dir <dir>         directory of <id>/manifest.json default models
  --model-dir <dir>          also one model's directory (its manifest.json); repeatable
  --secret <s>               shared secret (X-Piflow-Backend-Secret)  env PIFLOW_BACKEND_SECRET, required
  --execution-provider <p>   auto | cpu | cuda | webgpu      env PIFLOW_BACKEND_EP, default auto
  --max-batch-size <n>       rows per onnxruntime run        default ${DEFAULT_OPTIONS.maxBatchSize}
  --max-wait-ms <n>          batching window                 default ${DEFAULT_OPTIONS.maxWaitMs}
  --queue-limit <n>          queued requests per model       default ${DEFAULT_OPTIONS.queueLimit}
  --request-timeout-ms <n>   deadline per request            default ${DEFAULT_OPTIONS.requestTimeoutMs}
  --max-body-bytes <n>       largest request body            default ${DEFAULT_OPTIONS.maxBodyBytes}
  --intra-op-threads <n>     onnxruntime threads (0 = auto)  default 0
  --integrate-threads <n>    step integration workers (0 = inline)  default ${DEFAULT_OPTIONS.integrateThreads}
  --debug-run-delay-ms <n>   fault injection: delay every run (tests only)`

function fail(message: string): never {
  process.stderr.write(`piflow-backend: ${message}\n${USAGE}\n`)
  process.exit(2)
}

function number(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n)) fail(`--${name} must be a number, got "${value}"`)
  return n
}

async function main() {
  let values: Record<string, string | string[] | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'models-dir': { type: 'string' },
        'model-dir': { type: 'string', multiple: true },
        secret: { type: 'string' },
        'execution-provider': { type: 'string' },
        'max-batch-size': { type: 'string' },
        'max-wait-ms': { type: 'string' },
        'queue-limit': { type: 'string' },
        'request-timeout-ms': { type: 'string' },
        'max-body-bytes': { type: 'string' },
        'intra-op-threads': { type: 'string' },
        'integrate-threads': { type: 'string' },
        'debug-run-delay-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }))
  } catch (error) {
    fail((error as Error).message)
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  const str = (name: string) => values[name] as string | undefined
  const env = process.env
  const port = number('port', str('port') ?? env.PIFLOW_BACKEND_PORT) ?? 8788
  const ep = str('execution-provider') ?? env.PIFLOW_BACKEND_EP ?? 'auto'
  if (!(EXECUTION_PROVIDER_CHOICES as readonly string[]).includes(ep))
    fail(`--execution-provider must be ${EXECUTION_PROVIDER_TEXT}`)

  const controller = new AbortController()
  let backend: Awaited<ReturnType<typeof startBackend>> | undefined
  let shuttingDown = false
  const shutdown = (signal: string) => {
    if (shuttingDown) return
    shuttingDown = true
    process.stderr.write(`piflow-backend: ${signal}, shutting down\n`)
    controller.abort()
    if (backend === undefined) process.exit(0)
    backend.close().then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`piflow-backend: shutdown failed: ${error}\n`)
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))

  try {
    backend = await startBackend(
      {
        secret: str('secret') ?? env.PIFLOW_BACKEND_SECRET ?? '',
        modelsDir: str('models-dir') ?? 'models',
        modelDirs: (values['model-dir'] as string[] | undefined) ?? [],
        executionProvider: ep,
        maxBatchSize: number('max-batch-size', str('max-batch-size')),
        maxWaitMs: number('max-wait-ms', str('max-wait-ms')),
        queueLimit: number('queue-limit', str('queue-limit')),
        requestTimeoutMs: number('request-timeout-ms', str('request-timeout-ms')),
        maxBodyBytes: number('max-body-bytes', str('max-body-bytes')),
        intraOpThreads: number('intra-op-threads', str('intra-op-threads')),
        integrateThreads: number('integrate-threads', str('integrate-threads')),
        debugRunDelayMs: number('debug-run-delay-ms', str('debug-run-delay-ms')),
      } as Parameters<typeof startBackend>[0],
      { host: str('host') ?? '127.0.0.1', port },
      controller.signal,
    )
  } catch (error) {
    if (controller.signal.aborted) return
    fail((error as Error).message)
  }
  process.stderr.write(
    `piflow-backend: serving ${backend.models.join(', ') || '(no models)'} on ${backend.executionProvider}\n`,
  )
  process.stdout.write(`piflow-backend listening on ${backend.url}\n`)
}

void main()
