/**
 * @module keys
 * API key administration: `npx tsx scripts/keys.ts <create|list|revoke> …`. Keys are
 * `pf_<id>_<secret>`; KV (`API_KEYS`) stores only `key:<id>` → the record worker/src/keys.ts reads
 * (built by its own `createApiKeyRecord`, checked by its schema), written with `wrangler kv`.
 *
 *   create [--scopes a,b] [--rate-limit N/S] [--max-count N] [--name TEXT] <target>
 *          prints the new key once on stdout (nothing else goes to stdout)
 *   list   [--json] <target>
 *   revoke <id> <target>             sets `revoked: true`; records are never deleted
 *
 *   target: --local [--persist-to DIR]   wrangler's local state (`npm start` uses .wrangler/state)
 *           --env production             the production namespace (remote; needs wrangler login or
 *                                        CLOUDFLARE_API_TOKEN)
 *
 * Values reach wrangler through a temporary 0600 file, never argv (readable by every local user).
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  type ApiKeyRecord,
  apiKeyRecordSchema,
  createApiKeyRecord,
  SCOPES,
  type Scope,
} from '../worker/src/key-record.ts'
import { ROOT } from './local-stack.ts'

const USAGE = `usage: npx tsx scripts/keys.ts <command> [options] (--local [--persist-to DIR] | --env production)
  create [--scopes ${SCOPES.join(',')}] [--rate-limit N/SECONDS] [--max-count N] [--name TEXT]
  list [--json]
  revoke <id>`

class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Where the keys live: wrangler's local state or a deployed environment's namespace. */
type Target = { kind: 'local'; persistTo?: string } | { kind: 'remote'; env: string }

function wranglerArgs(target: Target): string[] {
  const args = ['--binding', 'API_KEYS', '--config', join(ROOT, 'wrangler.toml')]
  if (target.kind === 'remote') return [...args, '--remote', '--env', target.env]
  return [...args, '--local', ...(target.persistTo ? ['--persist-to', target.persistTo] : [])]
}

/** Runs wrangler with `args`; resolves stdout, rejects with its output on a non-zero exit. */
function wrangler(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'node_modules/wrangler/bin/wrangler.js'), ...args],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          WRANGLER_SEND_METRICS: 'false',
          CLOUDFLARE_CF_FETCH_ENABLED: 'false',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk
    })
    child.once('error', reject)
    child.once('exit', (code) => {
      if (code === 0) resolve(stdout)
      else
        reject(
          new Error(
            `wrangler ${args.slice(0, 3).join(' ')} failed (${code}):\n${stderr || stdout}`,
          ),
        )
    })
  })
}

/** Writes `key:<id>` from a private temporary file, removed afterwards whatever happens. */
async function putRecord(target: Target, id: string, record: ApiKeyRecord): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'piflow-key-'))
  const file = join(dir, 'record.json')
  try {
    writeFileSync(file, JSON.stringify(apiKeyRecordSchema.parse(record)), { mode: 0o600 })
    await wrangler(['kv', 'key', 'put', `key:${id}`, '--path', file, ...wranglerArgs(target)])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function getRecord(target: Target, id: string): Promise<ApiKeyRecord | undefined> {
  const out = (
    await wrangler(['kv', 'key', 'get', `key:${id}`, '--text', ...wranglerArgs(target)])
  ).trim()
  if (out === 'Value not found') return undefined
  let json: unknown
  try {
    json = JSON.parse(out)
  } catch {
    throw new Error(`key:${id} does not hold JSON: ${out.slice(0, 200)}`)
  }
  return apiKeyRecordSchema.parse(json)
}

async function listIds(target: Target): Promise<string[]> {
  const out = await wrangler(['kv', 'key', 'list', '--prefix', 'key:', ...wranglerArgs(target)])
  const entries = JSON.parse(out.slice(out.indexOf('['))) as { name: string }[]
  return entries.map((e) => e.name.slice('key:'.length))
}

/** A key in the worker's format: 64-bit hex id, 256-bit base64url secret. */
export function mintKey(): { id: string; key: string } {
  const id = randomBytes(8).toString('hex')
  return { id, key: `pf_${id}_${randomBytes(32).toString('base64url')}` }
}

function parseScopes(raw: string | undefined): Scope[] {
  if (raw === undefined) return [...SCOPES]
  const scopes = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const scope of scopes) {
    if (!(SCOPES as readonly string[]).includes(scope)) {
      throw new UsageError(`unknown scope "${scope}" (known: ${SCOPES.join(', ')})`)
    }
  }
  if (scopes.length === 0) throw new UsageError('--scopes needs at least one scope')
  return [...new Set(scopes)] as Scope[]
}

function parseRateLimit(raw: string | undefined): ApiKeyRecord['rateLimit'] {
  if (raw === undefined) return undefined
  const match = /^(\d+)\/(\d+)$/.exec(raw)
  if (!match || Number(match[2]) < 1)
    throw new UsageError('--rate-limit must look like 120/60 (images/seconds)')
  return { limit: Number(match[1]), windowSeconds: Number(match[2]) }
}

function parseMaxCount(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined
  if (!/^[1-9]\d{0,3}$/.test(raw)) throw new UsageError('--max-count must be a positive integer')
  return Number(raw)
}

function targetOf(values: { local?: boolean; env?: string; 'persist-to'?: string }): Target {
  if (values.local && values.env) throw new UsageError('--local and --env exclude each other')
  if (values.local)
    return { kind: 'local', ...(values['persist-to'] ? { persistTo: values['persist-to'] } : {}) }
  if (values['persist-to']) throw new UsageError('--persist-to needs --local')
  // An explicit target, always: minting into production by omission would be a bad surprise.
  if (!values.env) throw new UsageError('say where: --local or --env production')
  return { kind: 'remote', env: values.env }
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      scopes: { type: 'string' },
      'rate-limit': { type: 'string' },
      'max-count': { type: 'string' },
      name: { type: 'string' },
      env: { type: 'string' },
      local: { type: 'boolean' },
      'persist-to': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const [command, ...rest] = positionals
  if (values.help || !command) {
    console.error(USAGE)
    process.exitCode = values.help ? 0 : 2
    return
  }
  const target = targetOf(values)
  const where =
    target.kind === 'local'
      ? `local state${target.persistTo ? ` (${target.persistTo})` : ''}`
      : `env ${target.env}`

  if (command === 'create') {
    if (rest.length > 0)
      throw new UsageError(`create takes no positional arguments, got ${rest.join(' ')}`)
    const rateLimit = parseRateLimit(values['rate-limit'])
    const maxCount = parseMaxCount(values['max-count'])
    const { id, key } = mintKey()
    const record = await createApiKeyRecord(key, {
      scopes: parseScopes(values.scopes),
      ...(values.name ? { name: values.name } : {}),
      ...(rateLimit ? { rateLimit } : {}),
      ...(maxCount ? { maxCount } : {}),
    })
    await putRecord(target, id, record)
    console.error(
      `stored key:${id} in ${where} (scopes ${record.scopes.join(', ')}). The key is shown once:`,
    )
    process.stdout.write(`${key}\n`)
    return
  }

  if (command === 'list') {
    const rows: (Omit<ApiKeyRecord, 'hash'> & { id: string })[] = []
    for (const id of await listIds(target)) {
      const record = await getRecord(target, id)
      if (!record) continue
      const { hash: _hash, ...shown } = record
      rows.push({ id, ...shown })
    }
    if (values.json) {
      process.stdout.write(`${JSON.stringify(rows)}\n`)
      return
    }
    for (const row of rows) {
      const limit = row.rateLimit
        ? `${row.rateLimit.limit}/${row.rateLimit.windowSeconds}`
        : 'default'
      process.stdout.write(
        `${row.id}\t${row.revoked ? 'REVOKED' : 'active'}\t${row.scopes.join(',')}\trate ${limit}\tmax-count ${row.maxCount ?? 'default'}\t${row.name ?? ''}\n`,
      )
    }
    if (rows.length === 0) console.error(`no keys in ${where}`)
    return
  }

  if (command === 'revoke') {
    const [id] = rest
    if (!id || rest.length > 1 || !/^[a-z0-9]{1,32}$/.test(id))
      throw new UsageError('revoke takes one key id (the <id> of pf_<id>_…)')
    const record = await getRecord(target, id)
    if (!record) throw new UsageError(`no key:${id} in ${where}`)
    await putRecord(target, id, { ...record, revoked: true })
    // verifyApiKey memoises records for KEY_MEMO_MS per isolate; KV itself propagates within ~60 s.
    console.error(`revoked key:${id} in ${where} (refused everywhere within about a minute)`)
    return
  }

  throw new UsageError(`unknown command "${command}"`)
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) console.error(`${error.message}\n${USAGE}`)
  else console.error(error instanceof Error ? error.message : error)
  process.exitCode = error instanceof UsageError ? 2 : 1
})
