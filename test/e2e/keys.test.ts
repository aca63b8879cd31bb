/**
 * scripts/keys.ts against a real `wrangler dev`: keys minted into the worker's local state (before and
 * while it runs) authenticate with the scopes and limits they were minted with, only their hashes are
 * stored, and `revoke` turns them into 401s without deleting the record.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/local-stack.ts'
import { type Stack, startStack } from '../support/stack.ts'

const KEY = /^pf_([a-z0-9]{1,32})_([A-Za-z0-9_-]{16,128})$/

let dir: string
let stack: Stack

/** `npx tsx scripts/keys.ts … --local --persist-to <dir>` */
function keys(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [
        join(ROOT, 'node_modules/tsx/dist/cli.mjs'),
        'scripts/keys.ts',
        ...args,
        '--local',
        '--persist-to',
        dir,
      ],
      { cwd: ROOT },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr })
      },
    )
  })
}

async function mint(...args: string[]): Promise<string> {
  const out = await keys('create', ...args)
  expect(out.code, out.stderr).toBe(0)
  const key = out.stdout.trim()
  expect(key).toMatch(KEY)
  // Shown once: stdout is the key alone, stderr never repeats the secret.
  expect(out.stdout).toBe(`${key}\n`)
  expect(out.stderr).not.toContain(KEY.exec(key)![2])
  return key
}

const idOf = (key: string) => KEY.exec(key)![1]!
const call = (key: string, path: string, body?: unknown) =>
  fetch(`${stack.workerUrl}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
const codeOf = async (res: Response) =>
  ((await res.json()) as { error: { code: string } }).error.code

function filesUnder(root: string): string[] {
  return readdirSync(root, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
}

let writer: string
let reader: string
let generationId: string

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'piflow-keys-'))
  // Minted before the worker starts: it must find the key in the state it boots from.
  writer = await mint(
    '--scopes',
    'generations:write,generations:read',
    '--rate-limit',
    '5/60',
    '--max-count',
    '1',
    '--name',
    'e2e writer',
  )
  stack = await startStack({ persistTo: dir })
})
afterAll(async () => {
  await stack?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('scripts/keys.ts', () => {
  it('a minted key authenticates with the limits it was minted with', async () => {
    const tooMany = await call(writer, '/v1/generations', { prompt: 'red apple', count: 2 })
    expect(tooMany.status).toBe(422)
    const res = await call(writer, '/v1/generations', { prompt: 'red apple', seed: 7 })
    expect(res.status, await res.clone().text()).toBe(200)
    expect(res.headers.get('RateLimit-Policy')).toBe('"images";q=5;w=60')
    generationId = ((await res.json()) as { id: string }).id
    expect((await call(writer, `/v1/generations/${generationId}`)).status).toBe(200)
  })

  it('a key minted while the worker runs works at once, with its scopes', async () => {
    reader = await mint('--scopes', 'generations:read')
    const post = await call(reader, '/v1/generations', { prompt: 'pear' })
    expect(post.status).toBe(403)
    // Authenticated (404, not 401), and generations stay private to the key that made them.
    const get = await call(reader, `/v1/generations/${generationId}`)
    expect(get.status).toBe(404)
    expect(await codeOf(get)).toBe('generation_not_found')
    // A well-formed key that was never minted is still a 401.
    expect(
      (await call(`pf_${idOf(reader)}_${'A'.repeat(43)}`, '/v1/generations/gen_x')).status,
    ).toBe(401)
  })

  it('KV holds hashes, never the keys', async () => {
    const stored = filesUnder(dir).map((file) => readFileSync(file))
    for (const key of [writer, reader]) {
      const hash = createHash('sha256').update(key).digest('hex')
      expect(stored.some((bytes) => bytes.includes(hash))).toBe(true)
      expect(stored.some((bytes) => bytes.includes(KEY.exec(key)![2]!))).toBe(false)
    }
    const list = await keys('list', '--json')
    expect(list.code, list.stderr).toBe(0)
    const rows = JSON.parse(list.stdout) as Record<string, unknown>[]
    expect(rows).toContainEqual({
      id: idOf(writer),
      name: 'e2e writer',
      scopes: ['generations:write', 'generations:read'],
      rateLimit: { limit: 5, windowSeconds: 60 },
      maxCount: 1,
    })
    expect(list.stdout).not.toMatch(/hash|pf_/)
  })

  it('revoke: 401 within the key memo window, and the record is kept', async () => {
    const out = await keys('revoke', idOf(writer))
    expect(out.code, out.stderr).toBe(0)
    // Isolates trust a key record they read for up to KEY_MEMO_MS (10 s; worker/src/keys.ts).
    const deadline = Date.now() + 20_000
    let res = await call(writer, `/v1/generations/${generationId}`)
    while (res.status !== 401 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500))
      res = await call(writer, `/v1/generations/${generationId}`)
    }
    expect(res.status).toBe(401)
    expect(await codeOf(res)).toBe('unauthorized')
    // The other key is untouched.
    expect((await call(reader, '/v1/generations/gen_x')).status).toBe(404)
    const rows = JSON.parse((await keys('list', '--json')).stdout) as {
      id: string
      revoked?: boolean
    }[]
    expect(rows.find((r) => r.id === idOf(writer))).toMatchObject({ revoked: true, maxCount: 1 })
    expect(rows.find((r) => r.id === idOf(reader))?.revoked).toBeUndefined()
    expect((await keys('revoke', 'nosuchkey')).code).toBe(2)
  })
})
