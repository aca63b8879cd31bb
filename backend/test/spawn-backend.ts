/**
 * @module spawn-backend
 * Starts the backend as a real process (`tsx backend/src/main.ts`) for tests and benches, waits for its
 * one ready line on stdout, and stops it (SIGTERM, then SIGKILL) by its own process group.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** The shipped models (override with PIFLOW_MODELS_DIR to test another set). */
export const DEFAULT_MODELS_DIR = process.env.PIFLOW_MODELS_DIR ?? `${REPO_ROOT}models`
const MAIN = `${REPO_ROOT}backend/src/main.ts`
const TSX = `${REPO_ROOT}node_modules/.bin/tsx`

export interface SpawnedBackend {
  url: string
  secret: string
  child: ChildProcess
  /** Everything written to stderr so far. */
  stderr(): string
  /** Everything written to stdout so far. */
  stdout(): string
  /** SIGTERM (then SIGKILL after `graceMs`); resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>
}

export interface SpawnOptions {
  modelsDir?: string
  secret?: string
  /** Extra CLI flags, e.g. `['--max-batch-size', '4']`. */
  args?: string[]
  env?: Record<string, string>
  /** @default 120000 */
  startTimeoutMs?: number
}

/** Spawns `backend/src/main.ts --port 0` and resolves once it prints its ready line. */
export async function spawnBackend(options: SpawnOptions = {}): Promise<SpawnedBackend> {
  const secret = options.secret ?? randomBytes(16).toString('hex')
  const child = spawn(
    TSX,
    [
      MAIN,
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--models-dir',
      options.modelsDir ?? DEFAULT_MODELS_DIR,
      ...(options.args ?? []),
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, PIFLOW_BACKEND_SECRET: secret, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // own process group, so stop() reaches tsx's child node too
    },
  )
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    out += s
  })
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    err += s
  })
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  )

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      kill(child, 'SIGKILL')
      reject(new Error(`backend not ready in time; stderr:\n${err}`))
    }, options.startTimeoutMs ?? 120_000)
    const onData = () => {
      const match = /^piflow-backend listening on (http:\/\/\S+)\n/m.exec(out)
      if (match) {
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        resolve(match[1] as string)
      }
    }
    child.stdout?.on('data', onData)
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`backend exited with ${code} before ready; stderr:\n${err}`))
    })
  })

  return {
    url,
    secret,
    child,
    stderr: () => err,
    stdout: () => out,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      // SIGTERM to tsx alone (it relays to node); the group only gets the SIGKILL fallback.
      child.kill('SIGTERM')
      const timer = setTimeout(() => kill(child, 'SIGKILL'), graceMs)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}

function kill(child: ChildProcess, signal: NodeJS.Signals) {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}
