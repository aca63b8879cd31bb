/**
 * The local dev stack against another process on the same machine: what `npm start` / the test
 * stack serve on loopback besides the API must not let anyone read or change its state, or read its
 * secrets. Every port the worker's processes listen on is probed, not just the API port, since an
 * attacker on the machine sees them all (`ss -ltn`).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, localBucketName, ROOT, randomApiKey } from '../../scripts/local-stack.ts'
import { createApiKeyRecord, SCOPES } from '../../worker/src/key-record.ts'
import { call, type Generation, getGeneration, postGeneration } from './support/api.ts'
import { probeInspectors } from './support/devtools.ts'
import { isAlive, portsOf, processTree } from './support/processes.ts'
import { checkReport, record } from './support/report.ts'
import { type Rig, startRig } from './support/rig.ts'

const SUITE = 'dev-stack'
const EXPLORER = '/cdn-cgi/local/explorer/api'
/** The names anyone can read in wrangler.toml. */
const KV_NAMESPACE = 'piflow-api-keys'
const PUBLIC_BUCKET_NAME = 'piflow-images'

let rig: Rig
let made: Generation
/** Every TCP port the worker's processes (wrangler, workerd) listen on. */
let ports: number[]

/** A request that may find nothing listening; `0` then. */
async function statusOf(url: string, init: RequestInit = {}): Promise<number> {
  try {
    return (await call(url, { ...init, signal: AbortSignal.timeout(5000) })).status
  } catch {
    return 0
  }
}

const ok = (status: number) => status >= 200 && status < 300

beforeAll(async () => {
  rig = await startRig({ backends: 1, env: { PIFLOW_RATE_LIMIT: '100000/60' } })
  const response = await postGeneration(rig.workerUrl, rig.apiKey, {
    prompt: 'a red apple',
    seed: 5,
  })
  expect(response.status, response.text).toBe(200)
  made = response.json as Generation
  ports = portsOf(rig.workerProcesses())
  expect(ports).toContain(Number(new URL(rig.workerUrl).port))
})

afterAll(async () => {
  await rig?.stop()
  checkReport(SUITE)
})

describe('no local process takes the dev stack over', () => {
  it('Local Explorer: KV, R2 and Durable Object storage, on every port of the worker', async () => {
    const imageKey = `images/${made.images[0]!.sha256}.png`
    const attackerKey = randomApiKey('attacker')
    const attackerRecord = await createApiKeyRecord(attackerKey, {
      scopes: [...SCOPES],
      rateLimit: { limit: 1_000_000, windowSeconds: 1 },
    })
    const requests: { what: string; path: string; init?: RequestInit }[] = [
      { what: 'OpenAPI root', path: '' },
      { what: 'KV namespaces', path: '/storage/kv/namespaces' },
      { what: 'dev key record', path: `/storage/kv/namespaces/${KV_NAMESPACE}/values/key:dev` },
      {
        what: 'write an attacker key',
        path: `/storage/kv/namespaces/${KV_NAMESPACE}/values/key:attacker`,
        init: { method: 'PUT', body: JSON.stringify(attackerRecord) },
      },
      { what: 'R2 buckets', path: '/r2/buckets' },
      ...[PUBLIC_BUCKET_NAME, localBucketName(rig.signingSecret)].map((bucket) => ({
        what: 'an image object',
        path: `/r2/buckets/${bucket}/objects/${encodeURIComponent(imageKey)}`,
      })),
      { what: 'Durable Object namespaces', path: '/workers/durable_objects/namespaces' },
    ]
    const served: string[] = []
    for (const port of ports) {
      for (const request of requests) {
        const status = await statusOf(
          `http://127.0.0.1:${port}${EXPLORER}${request.path}`,
          request.init,
        )
        if (ok(status)) served.push(`${port} ${request.what}: ${status}`)
      }
    }
    // Whatever the writes did, the attacker's key must not authenticate.
    const asAttacker = await getGeneration(rig.workerUrl, attackerKey, made.id)
    const tried = ports.length * requests.length + 1
    record(SUITE, {
      check: `Local Explorer API (${requests.length} KV/R2/DO reads and writes) on each of the worker's ${ports.length} ports, then the written attacker key`,
      tried,
      survived: tried - served.length - (asAttacker.status === 401 ? 0 : 1),
      outcome: 'none served (explorer off); the attacker key gets 401',
    })
    expect(served).toEqual([])
    expect(asAttacker.status).toBe(401)
  })

  it('local observability: stored request traces, on every port of the worker', async () => {
    const served: string[] = []
    for (const port of ports) {
      const status = await statusOf(
        `http://127.0.0.1:${port}${EXPLORER}/local/observability/query`,
        {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ sql: 'SELECT * FROM spans LIMIT 50' }),
        },
      )
      if (ok(status)) served.push(`${port}: ${status}`)
    }
    record(SUITE, {
      check: `observability query (stored request URLs) on each of the worker's ${ports.length} ports`,
      tried: ports.length,
      survived: ports.length - served.length,
      outcome: 'none served (observability off)',
    })
    expect(served).toEqual([])
  })

  it("R2's unsigned public route, by the bucket name in wrangler.toml", async () => {
    const image = `${made.images[0]!.sha256}.png`
    const served: string[] = []
    for (const port of ports) {
      const url = `http://127.0.0.1:${port}/cdn-cgi/local/r2/public/${PUBLIC_BUCKET_NAME}/images/${image}`
      const status = await statusOf(url)
      if (ok(status)) served.push(`${port}: ${status}`)
    }
    record(SUITE, {
      check: `GET /cdn-cgi/local/r2/public/${PUBLIC_BUCKET_NAME}/images/<sha256>.png on each of the worker's ${ports.length} ports`,
      tried: ports.length,
      survived: ports.length - served.length,
      outcome:
        'never the image: the local bucket is named by a secret derived from the signing secret',
    })
    expect(served).toEqual([])
  })

  it('devtools inspectors: Runtime.evaluate(process.env.PIFLOW_BACKEND_SECRET)', async () => {
    const probes = await probeInspectors(
      ports,
      'globalThis.process?.env?.PIFLOW_BACKEND_SECRET ?? null',
    )
    const exposed = probes.filter((p) => p.targets > 0)
    const leaked = probes.filter((p) => p.values.some((v) => v.includes(rig.backendSecret)))
    record(SUITE, {
      check: `devtools /json/list + Runtime.evaluate on each of the worker's ${ports.length} ports`,
      tried: ports.length,
      survived: ports.length - exposed.length,
      outcome: 'no inspector listens (opt-in: PIFLOW_INSPECTOR_PORT); no secret evaluated',
    })
    expect(leaked.map((p) => p.port)).toEqual([])
    expect(exposed.map((p) => `${p.port}: ${p.targets} targets`)).toEqual([])
  })
})

/** Resolves once `child` printed a line matching `ready`; rejects if it exits or takes too long. */
function waitForOutput(child: ChildProcess, ready: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(
      () => reject(new Error(`not ready:\n${output.slice(-3000)}`)),
      timeoutMs,
    )
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (ready.test(output)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`exited early (${code}):\n${output.slice(-3000)}`))
    })
  })
}

/** Polls until every pid is gone or `timeoutMs` passed; returns those still alive. */
async function survivors(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const alive = pids.filter(isAlive)
    if (alive.length === 0 || Date.now() > deadline) return alive
    await new Promise((r) => setTimeout(r, 200))
  }
}

describe('signals to the README start commands stop every child', () => {
  // What systemd, `docker stop`, `timeout` and a closed terminal send: a signal to the top process.
  const cases = [
    ...(['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((signal) => ({
      signal,
      command: ['bash', 'scripts/start.sh'],
    })),
    { signal: 'SIGTERM' as const, command: ['npm', 'start'] },
  ]
  for (const { signal, command } of cases) {
    it(`${signal} to \`${command.join(' ')}\``, async () => {
      const port = await freePort()
      const stateDir = mkdtempSync(join(tmpdir(), 'piflow-start-'))
      const top = spawn(command[0]!, command.slice(1), {
        cwd: ROOT,
        env: { ...process.env, PORT: String(port), PIFLOW_STATE_DIR: stateDir },
        // Its own session: the signal reaches the top process alone, as from a supervisor.
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let tree: number[] = []
      try {
        await waitForOutput(top, /piflow is running/, 240_000)
        tree = processTree(top.pid!)
        top.kill(signal)
        const left = await survivors(tree, 20_000)
        const stillServing = (await statusOf(`http://127.0.0.1:${port}/healthz`)) !== 0
        record(SUITE, {
          check: `${signal} to the top process of \`${command.join(' ')}\`, once it serves`,
          tried: 1,
          survived: left.length === 0 && !stillServing ? 1 : 0,
          outcome:
            'every process below it (node, backend, wrangler, workerd) exits within 20 s; the port closes',
        })
        expect(tree.length).toBeGreaterThan(4)
        expect(left).toEqual([])
        expect(stillServing).toBe(false)
      } finally {
        for (const pid of tree.filter(isAlive)) process.kill(pid, 'SIGKILL')
        rmSync(stateDir, { recursive: true, force: true })
      }
    })
  }
})

/** `scripts/keys.ts …` on the rig's local state. */
function keysScript(...args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'scripts/keys.ts', ...args, '--local', '--persist-to', rig.persistTo],
      { cwd: ROOT },
      (error, stdout, stderr) => resolve({ code: error ? 1 : 0, output: stdout + stderr }),
    )
  })
}

describe('the state on disk', () => {
  it("wrangler's state directory is private to its user", () => {
    const entries = readdirSync(rig.persistTo, { recursive: true, withFileTypes: true })
    const paths = [rig.persistTo, ...entries.map((e) => join(e.parentPath, e.name))]
    const open = paths.filter((path) => (statSync(path).mode & 0o077) !== 0)
    record(SUITE, {
      check:
        'modes of the wrangler state directory and everything in it (KV, R2, Durable Object files)',
      tried: 1,
      survived: open.length === 0 ? 1 : 0,
      outcome: 'no group or other permission bits (umask 077 for the worker; directory 0700)',
    })
    expect(paths.length).toBeGreaterThan(5)
    expect(open.map((p) => `${(statSync(p).mode & 0o777).toString(8)} ${p}`)).toEqual([])
  })
})

describe('the local dev key', () => {
  it('a revoked dev key stays revoked across worker restarts', async () => {
    const keyId = /^pf_([a-z0-9]+)_/.exec(rig.apiKey)![1]!
    let revoke = { code: -1, output: '' }
    await rig.restartWorker({
      whileStopped: async () => {
        revoke = await keysScript('revoke', keyId)
      },
    })
    const afterOne = await getGeneration(rig.workerUrl, rig.apiKey, made.id)
    await rig.restartWorker()
    const afterTwo = await getGeneration(rig.workerUrl, rig.apiKey, made.id)
    const statuses = [afterOne.status, afterTwo.status]
    record(SUITE, {
      check: '`scripts/keys.ts revoke dev --local`, then 2 worker restarts with the same dev key',
      tried: statuses.length,
      survived: statuses.filter((s) => s === 401).length,
      outcome:
        '401 after each restart: the seed writes the dev key only when its record is missing or for another key',
    })
    expect(revoke.code, revoke.output).toBe(0)
    expect(statuses).toEqual([401, 401])
  })
})
