/**
 * @module test/reliability/support/rig
 * The local stack for the reliability suites: real backend processes, one fault proxy in front of
 * each, and the worker under `wrangler dev` routed to the proxies. Built from the same pieces as
 * test/support/stack.ts (scripts/local-stack.ts), plus what these suites need on top: every child's
 * log captured (to prove secrets never appear in it), SIGKILL of a backend mid-request, and a worker
 * restart on a persisted state directory.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  randomApiKey,
  randomSecret,
  type Service,
  startBackend,
  startWorker,
} from '../../../scripts/local-stack.ts'
import { type FaultProxy, startFaultProxy } from './fault-proxy.ts'
import { listenerPid, pidsInGroup, processGroupOf } from './processes.ts'

/** Options of {@link startRig}. */
export interface RigOptions {
  backends?: number
  /** extra worker vars */
  env?: Record<string, string>
  backendArgs?: string[]
}

/** A running rig. */
export interface Rig {
  workerUrl: string
  apiKey: string
  backendSecret: string
  signingSecret: string
  backendUrls: string[]
  proxies: FaultProxy[]
  /** every line any child printed, for the secret-leak checks */
  readonly logs: string[]
  /** SIGKILLs backend `i` (its whole process group), like a crashed host */
  killBackend(i: number): void
  /** every process of the worker (wrangler and its workerd), i.e. its process group */
  workerProcesses(): number[]
  /** SIGKILLs the worker (wrangler and workerd), like a crashed host; `restartWorker` brings it back */
  killWorker(): Promise<void>
  /** starts a fresh backend `i` and points its proxy at it */
  replaceBackend(i: number): Promise<void>
  /**
   * stops the worker and starts it again on the same state directory (same secrets); `whileStopped`
   * runs in between (e.g. scripts/keys.ts on the state, which the running workerd keeps locked)
   */
  restartWorker(options?: { apiKey?: string; whileStopped?: () => Promise<void> }): Promise<void>
  /** the wrangler state directory (KV, R2, Durable Objects) */
  persistTo: string
  stop(): Promise<void>
}

/** Every log line captured by any rig in this process (the secret-leak check reads it). */
export const capturedLogs: string[] = []
/** Secrets handed out by any rig in this process. */
export const issuedSecrets = new Set<string>()

export { rssOfListener } from './processes.ts'

/** SIGKILLs the whole process group serving `url`. */
function killGroupListeningOn(url: string): void {
  const pid = listenerPid(url)
  const pgid = pid === undefined ? undefined : processGroupOf(pid)
  if (pgid === undefined) throw new Error(`no process listens on ${url}`)
  process.kill(-pgid, 'SIGKILL')
}

/** Starts backends, proxies and the worker; cleans up everything if any part fails. */
export async function startRig(options?: RigOptions): Promise<Rig> {
  const count = options?.backends ?? 1
  const backendSecret = randomSecret()
  const signingSecret = randomSecret()
  let apiKey = randomApiKey()
  issuedSecrets.add(backendSecret).add(signingSecret).add(apiKey)
  const logs: string[] = []
  const log = (line: string) => {
    logs.push(line)
    capturedLogs.push(line)
  }
  const persistTo = mkdtempSync(join(tmpdir(), 'piflow-reliability-'))
  const backends: (Service | undefined)[] = []
  const backendUrls: string[] = []
  const proxies: FaultProxy[] = []
  let worker: Service | undefined
  const startOne = async (i: number) => {
    const service = await startBackend({
      secret: backendSecret,
      ...(options?.backendArgs ? { args: options.backendArgs } : {}),
      log,
    })
    backends[i] = service
    backendUrls[i] = service.url
    return service
  }
  const workerOptions = () => ({
    backends: proxies.map((p, i) => ({ id: `backend-${i}`, url: p.url, weight: 1 })),
    backendSecret,
    devApiKey: apiKey,
    signingSecret,
    persistTo,
    vars: { PIFLOW_SSE_KEEPALIVE_MS: '200', ...options?.env },
    log,
  })
  const stop = async () => {
    await worker?.stop()
    worker = undefined
    await Promise.all(backends.splice(0).map((b) => b?.stop()))
    await Promise.all(proxies.splice(0).map((p) => p.close()))
    rmSync(persistTo, { recursive: true, force: true })
  }
  try {
    await Promise.all(Array.from({ length: count }, (_, i) => startOne(i)))
    for (const url of backendUrls) proxies.push(await startFaultProxy(url))
    worker = await startWorker(workerOptions())
  } catch (error) {
    await stop()
    throw error
  }
  const rig: Rig = {
    workerUrl: worker.url,
    get apiKey() {
      return apiKey
    },
    backendSecret,
    signingSecret,
    backendUrls,
    proxies,
    logs,
    killBackend(i) {
      killGroupListeningOn(backendUrls[i]!)
    },
    workerProcesses() {
      const pid = listenerPid(rig.workerUrl)
      const pgid = pid === undefined ? undefined : processGroupOf(pid)
      return pgid === undefined ? [] : pidsInGroup(pgid)
    },
    async killWorker() {
      killGroupListeningOn(rig.workerUrl)
      await worker?.stop() // reaps the killed child; its state directory stays
      worker = undefined
    },
    async replaceBackend(i) {
      await backends[i]?.stop()
      const service = await startOne(i)
      proxies[i]!.upstream = service.url
    },
    persistTo,
    async restartWorker(restart) {
      await worker?.stop()
      await restart?.whileStopped?.()
      if (restart?.apiKey) {
        apiKey = restart.apiKey
        issuedSecrets.add(apiKey)
      }
      worker = await startWorker({ ...workerOptions(), port: Number(new URL(rig.workerUrl).port) })
    },
    stop,
  }
  return rig
}
