/**
 * @module local-stack
 * Starts the local piflow stack as real processes: inference backend(s) (`backend/src/main.ts`) and the
 * edge worker under `wrangler dev` (offline, workerd). Used by `npm start` (scripts/start.ts), the
 * benches and every suite that needs a backend or a worker. Every child runs in its own process group
 * so `stop()` takes down wrangler's workerd and tsx's node too.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { stageModelAssets } from './stage-model-assets.ts'

/** Repository root (this file lives in scripts/). */
export const ROOT = resolve(import.meta.dirname, '..')

/** A started child process. */
export interface Service {
  url: string
  /** stops the process (and its process group) */
  stop(): Promise<unknown>
}

/** A random url-safe secret. */
export const randomSecret = (bytes = 24) => randomBytes(bytes).toString('base64url')

/** A fresh API key in the worker's format, `pf_<id>_<secret>`. */
export const randomApiKey = (id = 'dev') => `pf_${id}_${randomSecret(24)}`

/** A TCP port that was free a moment ago (wrangler needs an explicit one); `preferred` if it is free. */
export async function freePort(preferred = 0): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (preferred !== 0 && error.code === 'EADDRINUSE') freePort().then(resolvePort, reject)
      else reject(error)
    })
    server.listen(preferred, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolvePort(port))
    })
  })
}

/** Sends `signal` to the whole process group of `child` (tsx's node, wrangler's workerd). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal)
  } catch {
    // the group is already gone
  }
}

/**
 * Stops `child`: SIGTERM (to its whole group, or to the child alone when it relays signals itself, as
 * tsx does), SIGKILL to the group after `graceMs`, and SIGKILL to any straggler once it exited.
 * Resolves with its exit code.
 */
function stopProcess(
  child: ChildProcess,
  options: { graceMs: number; termGroup: boolean },
): Promise<number | null> {
  return new Promise((resolveStop) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
      resolveStop(child.exitCode)
      return
    }
    const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), options.graceMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      signalGroup(child, 'SIGKILL')
      resolveStop(code)
    })
    if (options.termGroup) signalGroup(child, 'SIGTERM')
    else child.kill('SIGTERM')
  })
}

const ANSI_ESCAPE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g')
/** How much of a child's output is kept for `stdout()` / `stderr()` and error messages. */
const OUTPUT_KEPT = 1 << 20

/** A child spawned by {@link spawnUntil}: ready, with the output it wrote so far. */
interface ReadyChild {
  child: ChildProcess
  match: RegExpMatchArray
  stdout(): string
  stderr(): string
}

/**
 * Spawns `command` in its own process group and resolves once `ready` matches its output (stdout and
 * stderr, ANSI colours stripped); rejects with the output's tail when it exits or times out first.
 */
function spawnUntil(
  name: string,
  command: string,
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv
    ready: RegExp
    timeoutMs: number
    log?: (line: string) => void
  },
): Promise<ReadyChild> {
  return new Promise((resolveSpawn, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...options.env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const kept = { stdout: '', stderr: '', both: '' }
    const keep = (stream: 'stdout' | 'stderr', text: string) => {
      kept[stream] = (kept[stream] + text).slice(-OUTPUT_KEPT)
      kept.both = (kept.both + text).slice(-OUTPUT_KEPT)
    }
    let settled = false
    const fail = (message: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      void stopProcess(child, { graceMs: 1000, termGroup: true })
      reject(new Error(`${name}: ${message}\n--- output ---\n${kept.both.slice(-4000)}`))
    }
    const timer = setTimeout(
      () => fail(`not ready after ${options.timeoutMs} ms`),
      options.timeoutMs,
    )
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = chunk.toString()
      for (const line of text.split('\n')) if (line.trim()) options.log?.(line)
      keep(stream, text)
      if (settled) return
      // wrangler colours its output; strip ANSI escapes before matching
      const match = kept.both.replace(ANSI_ESCAPE, '').match(options.ready)
      if (match) {
        settled = true
        clearTimeout(timer)
        resolveSpawn({ child, match, stdout: () => kept.stdout, stderr: () => kept.stderr })
      }
    }
    child.stdout?.on('data', onData('stdout'))
    child.stderr?.on('data', onData('stderr'))
    child.once('error', (error) => fail(error.message))
    child.once('exit', (code, signal) => fail(`exited early (code ${code}, signal ${signal})`))
  })
}

/** The models a backend serves unless told otherwise: PIFLOW_MODELS_DIR, else the shipped ones. */
export const MODELS_DIR = process.env.PIFLOW_MODELS_DIR ?? join(ROOT, 'models')

/** Options of {@link startBackend}. */
export interface BackendOptions {
  /** the shared secret; a random one when omitted */
  secret?: string
  /** @default 0 (a free port) */
  port?: number
  /** @default {@link MODELS_DIR} */
  modelsDir?: string
  /** single model directories served besides those in `modelsDir` (`--model-dir`, repeated) */
  modelDirs?: string[]
  /** extra CLI flags, e.g. ['--debug-run-delay-ms', '200'] */
  args?: string[]
  /** extra environment, e.g. `VK_ICD_FILENAMES` */
  env?: Record<string, string>
  log?: (line: string) => void
}

/** A backend process (`backend/src/main.ts`), ready. */
export interface BackendService extends Service {
  secret: string
  /** everything it wrote to stdout (its one ready line) and to stderr so far */
  stdout(): string
  stderr(): string
  /** SIGTERM (a graceful shutdown), SIGKILL after `graceMs`; resolves with the exit code */
  stop(graceMs?: number): Promise<number | null>
}

/**
 * Starts `backend/src/main.ts` as a real process in its own process group and waits for its ready
 * line. The one way tests, benches and `npm start` run a backend.
 */
export async function startBackend(options: BackendOptions = {}): Promise<BackendService> {
  const secret = options.secret ?? randomSecret()
  const ready = await spawnUntil(
    'backend',
    process.execPath,
    [
      join(ROOT, 'node_modules/tsx/dist/cli.mjs'),
      'backend/src/main.ts',
      '--port',
      String(options.port ?? 0),
      '--host',
      '127.0.0.1',
      '--models-dir',
      options.modelsDir ?? MODELS_DIR,
      ...(options.modelDirs ?? []).flatMap((dir) => ['--model-dir', resolve(dir)]),
      ...(options.args ?? []),
    ],
    {
      // The secret goes by environment, not argv: argv is readable by every local user (ps), and a
      // base64url secret starting with '-' would be taken for a flag.
      env: { ...options.env, PIFLOW_BACKEND_SECRET: secret },
      ready: /piflow-backend listening on (http:\/\/\S+)/,
      timeoutMs: 120_000,
      ...(options.log ? { log: options.log } : {}),
    },
  )
  return {
    url: ready.match[1]!,
    secret,
    stdout: ready.stdout,
    stderr: ready.stderr,
    // SIGTERM to tsx alone (it relays it to node, which drains); the group only gets the SIGKILL.
    stop: (graceMs = 15_000) => stopProcess(ready.child, { graceMs, termGroup: false }),
  }
}

/** The PyTorch backend's interpreter: $PIFLOW_TORCH_PYTHON, else the virtualenv of `scripts/setup.sh --torch`. */
export const TORCH_PYTHON =
  process.env.PIFLOW_TORCH_PYTHON ?? join(ROOT, '.toolchain/torch-py/bin/python')

/** The tiny complete fixture models of the PyTorch backend (CPU-sized; torch-backend/fixtures). */
export const TORCH_FIXTURE_MANIFESTS = join(ROOT, 'torch-backend/fixtures/manifests')

/** Options of {@link startTorchBackend}. */
export interface TorchBackendOptions {
  /** manifest paths or bundled ids (`--model`, repeated) */
  models: string[]
  secret?: string
  /** extra CLI flags, e.g. ['--debug-step-delay-ms', '100'] */
  args?: string[]
  /**
   * Run the Ray Serve deployment of torch-backend/serve.yaml on a local CPU cluster with this many
   * replicas (torch-backend/piflow_torch/ray_serve_local.py) instead of the plain server.
   */
  rayReplicas?: number
  log?: (line: string) => void
}

/** A PyTorch backend process, ready. */
export interface TorchBackendService extends Service {
  secret: string
  /** SIGKILL to its process group at once: a crash, for fault tests */
  kill(): void
}

/**
 * Starts the PyTorch backend (`python -m piflow_torch.server`, or its Ray Serve deployment) as a real
 * process in its own process group on a free port, and waits for its ready line.
 */
export async function startTorchBackend(
  options: TorchBackendOptions,
): Promise<TorchBackendService> {
  const secret = options.secret ?? randomSecret()
  const ray = options.rayReplicas !== undefined
  const args = [
    '-m',
    ray ? 'piflow_torch.ray_serve_local' : 'piflow_torch.server',
    '--host',
    '127.0.0.1',
    '--port',
    String(ray ? await freePort() : 0),
    ...options.models.flatMap((model) => ['--model', model]),
    ...(ray ? ['--replicas', String(options.rayReplicas)] : []),
    ...(options.args ?? []),
  ]
  const ready = await spawnUntil('torch backend', TORCH_PYTHON, args, {
    env: {
      PIFLOW_BACKEND_SECRET: secret,
      PYTHONPATH: join(ROOT, 'torch-backend'),
      // CPU fixture models: no accelerator probing, few threads on a shared machine.
      OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2',
    },
    ready: /piflow-torch\S* listening on (http:\/\/\S+)/,
    timeoutMs: 300_000,
    ...(options.log ? { log: options.log } : {}),
  })
  return {
    url: ready.match[1]!,
    secret,
    // Ray: SIGTERM to the driver alone, which shuts the deployment and the cluster down (its raylet,
    // GCS and workers share the group, and the group's SIGKILL takes any straggler once it exited).
    stop: () => stopProcess(ready.child, { graceMs: ray ? 30_000 : 10_000, termGroup: !ray }),
    kill: () => signalGroup(ready.child, 'SIGKILL'),
  }
}

/**
 * The local R2 bucket's name: wrangler serves every local bucket unsigned at
 * `/cdn-cgi/local/r2/public/<bucket>/<key>` (it cannot be turned off), so the name is a secret,
 * derived from the signing secret (stable for a state directory, unguessable without it).
 */
export function localBucketName(signingSecret: string): string {
  const tag = createHmac('sha256', signingSecret).update('piflow local r2 bucket').digest('hex')
  return `piflow-images-${tag.slice(0, 32)}`
}

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  /** PIFLOW_BACKENDS entries (`models`: the models that backend alone serves) */
  backends: { id?: string; url: string; weight?: number; models?: string[] }[]
  backendSecret: string
  devApiKey: string
  signingSecret: string
  port?: number
  /** wrangler state directory; a fresh temporary one (removed on stop) when omitted */
  persistTo?: string
  /** extra worker vars, e.g. { PIFLOW_INTEGRATION: 'backend' } */
  vars?: Record<string, string>
  /**
   * model ids served after wrangler.toml's PIFLOW_MODELS (whose first stays the default model), e.g. the
   * PyTorch backend's; a `vars.PIFLOW_MODELS` replaces the list instead
   */
  addModels?: string[]
  /**
   * single model directories published besides the shipped `models/<id>/` (their manifest and files:
   * staged into a private assets directory of this worker, removed on stop)
   */
  modelDirs?: string[]
  log?: (line: string) => void
}

/**
 * Starts the worker under scripts/wrangler-dev.ts (`wrangler dev` with the channels a local process
 * could take it over by closed; workerd, offline) and waits until it answers.
 */
export async function startWorker(options: WorkerOptions): Promise<Service> {
  // wrangler's [build] step stages the shipped ones too; doing it first guarantees the directory
  // exists. Extra model directories go to a directory of this worker's own: the build step (and every
  // other stack in this checkout) restages the shared one with the shipped models only.
  const assetsDir =
    options.modelDirs && options.modelDirs.length > 0
      ? mkdtempSync(join(tmpdir(), 'piflow-assets-'))
      : undefined
  stageModelAssets(assetsDir ? { outDir: assetsDir, extraDirs: options.modelDirs ?? [] } : {})
  const temporaryState = options.persistTo === undefined
  const persistTo = options.persistTo ?? mkdtempSync(join(tmpdir(), 'piflow-wrangler-'))
  const vars: Record<string, string> = {
    PIFLOW_ENV: 'local',
    PIFLOW_BACKENDS: JSON.stringify(options.backends),
    ...options.vars,
  }
  // Secrets go through a private env file, not `--var`: argv is readable by every local user (ps).
  const secretsDir = mkdtempSync(join(tmpdir(), 'piflow-secrets-'))
  const envFile = join(secretsDir, '.env')
  const secrets = {
    PIFLOW_BACKEND_SECRET: options.backendSecret,
    PIFLOW_SIGNING_SECRET: options.signingSecret,
    PIFLOW_DEV_API_KEY: options.devApiKey,
  }
  writeFileSync(
    envFile,
    Object.entries(secrets)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
    { mode: 0o600 },
  )
  const spawnWrangler = async () => {
    const port = options.port ?? (await freePort())
    const { child } = await spawnUntil(
      'wrangler dev',
      process.execPath,
      [
        '--import',
        'tsx',
        'scripts/wrangler-dev.ts',
        '--config',
        'wrangler.toml',
        '--port',
        String(port),
        '--persist-to',
        persistTo,
        '--env-file',
        envFile,
        ...(assetsDir ? ['--assets', assetsDir] : []),
        ...(options.addModels ?? []).flatMap((id) => ['--add-model', id]),
        ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}:${v}`]),
      ],
      {
        // By env, like the secrets: the bucket's name is what its unsigned public route needs.
        env: { PIFLOW_LOCAL_R2_BUCKET: localBucketName(options.signingSecret) },
        ready: /piflow-worker ready on (http:\/\/\S+)/,
        timeoutMs: 120_000,
        ...(options.log ? { log: options.log } : {}),
      },
    )
    return { child, port }
  }
  let started: Awaited<ReturnType<typeof spawnWrangler>> | undefined
  // freePort() can only say a port was free a moment ago: another process (a parallel test's
  // server) may take it before wrangler binds. Then fresh ports are tried, unless the caller chose one.
  for (let attempt = 1; started === undefined; attempt++) {
    try {
      started = await spawnWrangler()
    } catch (error) {
      const taken = /Address already in use/.test(String(error))
      if (!taken || options.port !== undefined || attempt === 3) {
        rmSync(secretsDir, { recursive: true, force: true })
        if (temporaryState) rmSync(persistTo, { recursive: true, force: true })
        if (assetsDir) rmSync(assetsDir, { recursive: true, force: true })
        throw error
      }
    }
  }
  const { child, port } = started
  const url = `http://127.0.0.1:${port}`
  const stop = async () => {
    await stopProcess(child, { graceMs: 5000, termGroup: true })
    rmSync(secretsDir, { recursive: true, force: true })
    if (temporaryState) rmSync(persistTo, { recursive: true, force: true })
    if (assetsDir) rmSync(assetsDir, { recursive: true, force: true })
  }
  // "Ready" is printed when the socket listens; wait until the worker itself answers.
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      const response = await fetch(`${url}/healthz`)
      if (response.ok) break
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error('wrangler dev: /healthz never answered 200')
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  return { url, stop }
}
