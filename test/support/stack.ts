/**
 * @module test/support/stack
 * The whole local stack for tests: real backend process(es) plus the worker under `wrangler dev`
 * (workerd, offline), on random ports with fresh secrets, a fresh dev API key and a throw-away
 * wrangler state directory. Used by the e2e, SDK and browser suites.
 *
 * @example
 * ```ts
 * const stack = await startStack()
 * const res = await postGeneration(stack, { prompt: 'a red apple', seed: 1 })
 * await stack.stop()
 * ```
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import {
  randomApiKey,
  randomSecret,
  type Service,
  startBackend,
  startTorchBackend,
  startWorker,
  TORCH_FIXTURE_MANIFESTS,
  TORCH_PYTHON,
  type TorchBackendService,
} from '../../scripts/local-stack.ts'

/** Options of {@link startStack}. */
export interface StackOptions {
  /** how many backend processes to start (the worker routes across them). @default 1 */
  backends?: number
  /** extra worker vars, e.g. `{ PIFLOW_INTEGRATION: 'backend', PIFLOW_RATE_LIMIT: '5/60' }` */
  env?: Record<string, string>
  /** extra backend CLI flags, e.g. `['--debug-run-delay-ms', '300']` */
  backendArgs?: string[]
  /**
   * Backends started elsewhere to add to PIFLOW_BACKENDS (e.g. a PyTorch backend with the `models`
   * it serves); they must accept the stack's `backendSecret`, so pass it in.
   */
  extraBackends?: { id: string; url: string; models?: string[] }[]
  /** the backend secret to use (to start extra backends with it first); a random one when omitted */
  backendSecret?: string
  /** print the children's output (debugging) */
  verbose?: boolean
  /** wrangler state directory to use (and keep); a fresh temporary one when omitted */
  persistTo?: string
  /**
   * single model directories served besides the shipped models: loaded by every backend
   * (`--model-dir`) and published by the worker; list their ids in `addModels` (or `env.PIFLOW_MODELS`)
   */
  modelDirs?: string[]
  /** model ids served after wrangler.toml's PIFLOW_MODELS (whose first stays the default) */
  addModels?: string[]
}

/** A running stack. */
export interface Stack {
  workerUrl: string
  /** the first backend's URL */
  backendUrl: string
  backendUrls: string[]
  /** a dev API key with every scope */
  apiKey: string
  /** what the worker sends backends as X-Piflow-Backend-Secret (to call backends directly) */
  backendSecret: string
  /** stops the worker and every backend (process groups); safe to call twice */
  stop(): Promise<void>
}

/** Starts backend(s) and the worker; rejects (after cleaning up) if either fails to come up. */
/** `POST /v1/generations` on the stack's worker with its key: JSON `body`, extra `headers` win. */
export function postGeneration(
  stack: Pick<Stack, 'workerUrl' | 'apiKey'>,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${stack.workerUrl}/v1/generations`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${stack.apiKey}`,
      'Content-Type': 'application/json',
      ...headers,
    },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  })
}

export async function startStack(options?: StackOptions): Promise<Stack> {
  const count = options?.backends ?? 1
  const backendSecret = options?.backendSecret ?? randomSecret()
  const apiKey = randomApiKey()
  const log = options?.verbose ? (line: string) => console.error(line) : undefined
  const services: Service[] = []
  const stopAll = async () => {
    await Promise.all(services.splice(0).map((s) => s.stop()))
  }
  try {
    const backends = await Promise.all(
      Array.from({ length: count }, () =>
        startBackend({
          secret: backendSecret,
          ...(options?.modelDirs ? { modelDirs: options.modelDirs } : {}),
          ...(options?.backendArgs ? { args: options.backendArgs } : {}),
          ...(log ? { log } : {}),
        }),
      ),
    )
    services.push(...backends)
    const worker = await startWorker({
      backends: [
        ...backends.map((b, i) => ({ id: `backend-${i}`, url: b.url, weight: 1 })),
        ...(options?.extraBackends ?? []),
      ],
      backendSecret,
      devApiKey: apiKey,
      signingSecret: randomSecret(),
      ...(options?.env ? { vars: options.env } : {}),
      ...(options?.modelDirs ? { modelDirs: options.modelDirs } : {}),
      ...(options?.addModels ? { addModels: options.addModels } : {}),
      ...(options?.persistTo ? { persistTo: options.persistTo } : {}),
      ...(log ? { log } : {}),
    })
    services.push(worker)
    return {
      workerUrl: worker.url,
      backendUrl: backends[0]!.url,
      backendUrls: backends.map((b) => b.url),
      apiKey,
      backendSecret,
      stop: stopAll,
    }
  } catch (error) {
    await stopAll()
    throw error
  }
}

/** Options of {@link startTorchStack}. */
export interface TorchStackOptions {
  /** fixture model ids (torch-backend/fixtures/manifests/<id>.json) the PyTorch backend serves */
  models: string[]
  /** extra flags of the PyTorch backend, e.g. `['--debug-step-delay-ms', '150']` */
  torchArgs?: string[]
  /** run the Ray Serve deployment with this many CPU replicas instead of the plain server */
  rayReplicas?: number
  /** the URL the worker reaches the PyTorch backend at, from its own (e.g. a fault proxy's) */
  routeThrough?: (torchUrl: string) => Promise<string>
  /** extra worker vars */
  env?: Record<string, string>
}

/** A stack whose worker also routes PyTorch fixture models to a real PyTorch backend (id `torch`). */
export interface TorchStack extends Stack {
  torch: TorchBackendService
}

/**
 * The PyTorch backend (plain or Ray Serve) with tiny fixture models, then the stack with it in
 * PIFLOW_BACKENDS for those models, served after wrangler.toml's PIFLOW_MODELS. `stop()` stops both.
 */
export async function startTorchStack(options: TorchStackOptions): Promise<TorchStack> {
  const backendSecret = randomSecret()
  const torch = await startTorchBackend({
    secret: backendSecret,
    models: options.models.map((id) => join(TORCH_FIXTURE_MANIFESTS, `${id}.json`)),
    ...(options.torchArgs ? { args: options.torchArgs } : {}),
    ...(options.rayReplicas !== undefined ? { rayReplicas: options.rayReplicas } : {}),
  })
  try {
    const url = options.routeThrough ? await options.routeThrough(torch.url) : torch.url
    const stack = await startStack({
      backendSecret,
      extraBackends: [{ id: 'torch', url, models: options.models }],
      addModels: options.models,
      ...(options.env ? { env: options.env } : {}),
    })
    return {
      ...stack,
      torch,
      stop: async () => {
        await Promise.all([stack.stop(), torch.stop()])
      },
    }
  } catch (error) {
    await torch.stop()
    throw error
  }
}

/** Why the PyTorch suites skip here, or undefined when its environment exists. */
export function torchSkipReason(): string | undefined {
  return existsSync(TORCH_PYTHON)
    ? undefined
    : `skipped: no PyTorch environment at ${TORCH_PYTHON} (run scripts/setup.sh --test or set PIFLOW_TORCH_PYTHON)`
}
