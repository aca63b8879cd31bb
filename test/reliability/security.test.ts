/**
 * Security checks against the real local stack: authentication on the worker and the backend, tenant
 * isolation between API keys, no client control over where the worker sends traffic (SSRF), CORS and
 * the documented headers, signed image URLs, and secrets never reaching any log.
 */
import { readFileSync } from 'node:fs'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomApiKey } from '../../scripts/local-stack.ts'
import {
  call,
  expectErrorBody,
  fetchImage,
  type Generation,
  getGeneration,
  postGeneration,
  type ReadResponse,
} from './support/api.ts'
import { checkReport, record } from './support/report.ts'
import { type Rig, startRig } from './support/rig.ts'

const SUITE = 'security'
const ROOT = resolve(import.meta.dirname, '../..')
let rig: Rig
let firstKey: string
let secondKey: string
/** A loopback server that must never be contacted: every SSRF attempt points at it. */
let canary: Server
let canaryUrl: string
let canaryHits = 0
let madeByFirst: Generation

/** Runs `cases`, recording how many met `ok`. */
async function table<T>(
  check: string,
  outcome: string,
  cases: T[],
  run: (c: T) => Promise<boolean>,
): Promise<void> {
  let survived = 0
  const failed: T[] = []
  for (const c of cases) {
    if (await run(c)) survived++
    else failed.push(c)
  }
  record(SUITE, { check, tried: cases.length, survived, outcome })
  expect(failed).toEqual([])
}

const isError = (response: ReadResponse, status: number, code: string) => {
  if (response.status !== status) return false
  return expectErrorBody(response) === code
}

beforeAll(async () => {
  canary = createServer((_req, res) => {
    canaryHits++
    res.end('canary')
  })
  await new Promise<void>((r) => canary.listen(0, '127.0.0.1', () => r()))
  canaryUrl = `http://127.0.0.1:${(canary.address() as AddressInfo).port}`
  rig = await startRig({ backends: 1, env: { PIFLOW_RATE_LIMIT: '100000/60' } })
  firstKey = rig.apiKey
  const made = await postGeneration(rig.workerUrl, firstKey, { prompt: 'a blue car', seed: 11 })
  expect(made.status, made.text).toBe(200)
  madeByFirst = made.json as Generation
})

afterAll(async () => {
  await rig?.stop()
  await new Promise((r) => canary?.close(r))
  checkReport(SUITE)
})

describe('authentication', () => {
  it('worker: missing, wrong, malformed and misplaced keys', async () => {
    const [, id, secret] = /^pf_([a-z0-9]+)_(.+)$/.exec(firstKey)!
    const flipped = `${secret!.slice(0, -1)}${secret!.endsWith('A') ? 'B' : 'A'}`
    const routes = [
      { method: 'POST', path: '/v1/generations', body: '{"prompt":"x"}' },
      { method: 'GET', path: `/v1/generations/${madeByFirst.id}` },
    ]
    const credentials: {
      name: string
      headers: Record<string, string>
      query?: string
      expect: [number, string]
    }[] = [
      { name: 'none', headers: {}, expect: [401, 'unauthorized'] },
      {
        name: 'wrong secret, real key id',
        headers: { Authorization: `Bearer pf_${id}_${flipped}` },
        expect: [401, 'unauthorized'],
      },
      {
        name: 'unknown key id',
        headers: { Authorization: `Bearer pf_nobody_${secret}` },
        expect: [401, 'unauthorized'],
      },
      {
        name: 'not a piflow key',
        headers: { Authorization: 'Bearer sk-1234567890abcdef' },
        expect: [401, 'unauthorized'],
      },
      {
        name: 'Basic scheme',
        headers: { Authorization: `Basic ${btoa(`x:${firstKey}`)}` },
        expect: [400, 'malformed_authorization'],
      },
      {
        name: 'empty bearer',
        headers: { Authorization: 'Bearer ' },
        expect: [400, 'malformed_authorization'],
      },
      {
        name: 'key in ?api_key=',
        headers: {},
        query: `api_key=${firstKey}`,
        expect: [400, 'credentials_in_query'],
      },
    ]
    const cases = routes.flatMap((route) => credentials.map((cred) => ({ route, cred })))
    await table(
      `worker routes × credentials (${routes.length} routes × ${credentials.length} kinds)`,
      '401 unauthorized (+ WWW-Authenticate) / 400 malformed_authorization / 400 credentials_in_query; never data',
      cases,
      async ({ route, cred }) => {
        const response = await call(
          `${rig.workerUrl}${route.path}${cred.query ? `?${cred.query}` : ''}`,
          {
            method: route.method,
            headers: { 'Content-Type': 'application/json', ...cred.headers },
            ...(route.body ? { body: route.body } : {}),
          },
        )
        const ok = isError(response, ...cred.expect)
        if (cred.expect[0] === 401) return ok && response.headers.has('www-authenticate')
        return ok
      },
    )
  })

  it('worker: arbitrary Authorization values never authenticate (fast-check seed 801)', async () => {
    let runs = 0
    const statuses = new Set<number>()
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc
            .string({
              unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
              maxLength: 120,
            })
            .map((s) => `Bearer ${s}`),
          fc.stringMatching(/^pf_[a-z0-9]{1,8}_[A-Za-z0-9_-]{16,40}$/).map((s) => `Bearer ${s}`),
          fc.constant(`Bearer ${firstKey.slice(0, -2)}`),
          fc.constant(`Bearer ${firstKey}x`),
        ),
        async (authorization) => {
          runs++
          const response = await call(`${rig.workerUrl}/v1/generations/${madeByFirst.id}`, {
            headers: { Authorization: authorization },
          })
          statuses.add(response.status)
          expect([400, 401]).toContain(response.status)
          expectErrorBody(response)
        },
      ),
      { seed: 801, numRuns: 100 },
    )
    record(SUITE, {
      check: 'random Authorization values on GET /v1/generations/:id (fast-check seed 801)',
      tried: 100,
      survived: runs === 100 ? 100 : 0,
      outcome: `only 400/401 (${[...statuses].sort().join(', ')})`,
    })
  })

  it('backend: the shared secret guards /v1/*; health probes reveal nothing', async () => {
    const backend = rig.backendUrls[0]!
    const cases = [
      { path: '/v1/models', secret: undefined, expect: 401 },
      { path: '/v1/models', secret: `${rig.backendSecret}x`, expect: 401 },
      { path: '/v1/models', secret: rig.backendSecret.slice(1), expect: 401 },
      { path: '/v1/models', secret: firstKey, expect: 401 },
      { path: '/v1/models/piflow-emoji/forward', secret: undefined, expect: 401, post: true },
      { path: '/v1/models/piflow-emoji/step', secret: 'wrong', expect: 401, post: true },
      { path: '/v1/models', secret: rig.backendSecret, expect: 200 },
      { path: '/healthz', secret: undefined, expect: 200 },
    ]
    await table(
      `backend routes × secrets (${cases.length} cases)`,
      '401 unauthorized without the exact secret; /healthz open and content-free',
      cases,
      async (c) => {
        const response = await call(`${backend}${c.path}`, {
          method: c.post ? 'POST' : 'GET',
          headers: {
            'Content-Type': 'application/octet-stream',
            ...(c.secret === undefined ? {} : { 'X-Piflow-Backend-Secret': c.secret }),
          },
          ...(c.post ? { body: new Uint8Array(16) } : {}),
        })
        if (response.status !== c.expect) return false
        if (c.expect === 401) return expectErrorBody(response) === 'unauthorized'
        if (c.path === '/healthz') return response.text === '{"status":"ok"}'
        return true
      },
    )
  })

  it('keys are compared in constant time (source check: no plain === on secrets)', () => {
    const keys = readFileSync(resolve(ROOT, 'worker/src/keys.ts'), 'utf8')
    const images = readFileSync(resolve(ROOT, 'worker/src/images.ts'), 'utf8')
    const crypto = readFileSync(resolve(ROOT, 'worker/src/crypto.ts'), 'utf8')
    const backend = readFileSync(resolve(ROOT, 'backend/src/app.ts'), 'utf8')
    const checks = [
      /timingSafeEqualStrings\(presentedHash/.test(keys),
      /timingSafeEqualStrings\(expected, sig\)/.test(images),
      /crypto\.subtle\.timingSafeEqual\(/.test(crypto),
      /timingSafeEqual\(sha256\(given\), secretDigest\)/.test(backend),
    ]
    record(SUITE, {
      check:
        'constant-time comparison of API keys, image signatures and the backend secret (source)',
      tried: checks.length,
      survived: checks.filter(Boolean).length,
      outcome: 'hash-then-timingSafeEqual in worker (keys, URL signatures) and backend (secret)',
    })
    expect(checks).toEqual([true, true, true, true])
  })
})

describe('tenant isolation', () => {
  it("another key cannot read, replay or hit the cache of a key's generations", async () => {
    // A second key: restart the worker (persisted KV) with a different dev key id; both stay valid.
    secondKey = randomApiKey('other')
    await rig.restartWorker({ apiKey: secondKey })
    const checks: boolean[] = []
    // The first key still works after the restart and still reads its generation.
    const own = await getGeneration(rig.workerUrl, firstKey, madeByFirst.id)
    checks.push(own.status === 200 && (own.json as Generation).id === madeByFirst.id)
    // The second key gets 404, not 403: it cannot even learn the id exists.
    const other = await getGeneration(rig.workerUrl, secondKey, madeByFirst.id)
    checks.push(isError(other, 404, 'generation_not_found'))
    // The same seeded request under the second key is not served from the first key's cache.
    const mine = await postGeneration(rig.workerUrl, secondKey, { prompt: 'a blue car', seed: 11 })
    checks.push(mine.status === 200 && (mine.json as Generation).cached === false)
    checks.push((mine.json as Generation).id !== madeByFirst.id)
    // Idempotency-Keys are per API key: the same key string under another tenant is a new request.
    const key = `iso-${Date.now()}`
    const a = await postGeneration(
      rig.workerUrl,
      firstKey,
      { prompt: 'a tree', seed: 12 },
      { 'Idempotency-Key': key },
    )
    const b = await postGeneration(
      rig.workerUrl,
      secondKey,
      { prompt: 'a house', seed: 13 },
      { 'Idempotency-Key': key },
    )
    checks.push(a.status === 200 && b.status === 200)
    checks.push((a.json as Generation).id !== (b.json as Generation).id)
    checks.push(b.headers.get('idempotent-replayed') === null)
    await table(
      'two API keys: reads, cache and Idempotency-Keys across tenants (7 checks)',
      "404 generation_not_found for another key's id; no cross-tenant cache hit or replay",
      checks,
      async (ok) => ok,
    )
  })
})

describe('no SSRF: clients cannot choose where the worker connects', () => {
  it('backend-ish fields are refused; spoofed forwarding headers are ignored', async () => {
    const body = { prompt: 'a boat', seed: 21 }
    const fieldCases = [
      { ...body, backend: canaryUrl },
      { ...body, backendUrl: canaryUrl },
      { ...body, url: canaryUrl },
      { ...body, callback: canaryUrl },
      { ...body, model: canaryUrl },
      { ...body, model: '../../../v1/models' },
      { ...body, model: `piflow-emoji@${new URL(canaryUrl).host}` },
    ]
    const headerCases: Record<string, string>[] = [
      { 'X-Forwarded-Host': new URL(canaryUrl).host },
      { Forwarded: `host=${new URL(canaryUrl).host};proto=http` },
      { 'X-Forwarded-Proto': 'gopher', 'X-Forwarded-Port': new URL(canaryUrl).port },
      { 'X-Piflow-Backend': canaryUrl, 'X-Backend-Url': canaryUrl },
      { 'X-Piflow-Backend-Secret': rig.backendSecret, 'X-Original-URL': canaryUrl },
    ]
    let survived = 0
    for (const fields of fieldCases) {
      const response = await postGeneration(rig.workerUrl, secondKey, fields)
      if (isError(response, 422, 'validation_failed')) survived++
    }
    for (const [i, headers] of headerCases.entries()) {
      const response = await postGeneration(
        rig.workerUrl,
        secondKey,
        { ...body, seed: 30 + i },
        headers,
      )
      const generation = response.json as Generation
      // Served normally by the configured backend, and the image URL stays on the worker's origin.
      if (
        response.status === 200 &&
        generation.backends.every((b) => b === 'backend-0') &&
        new URL(generation.images[0]!.url).origin === rig.workerUrl
      ) {
        survived++
      }
    }
    // A raw Host header (fetch cannot spoof it): the signed URL must not point elsewhere either.
    const hostSpoof = await new Promise<{ status: number; text: string }>((done, fail) => {
      const req = httpRequest(`${rig.workerUrl}/v1/generations`, {
        method: 'POST',
        headers: {
          Host: new URL(canaryUrl).host,
          Authorization: `Bearer ${secondKey}`,
          'Content-Type': 'application/json',
        },
        timeout: 30_000,
      })
      req.on('response', (res) => {
        let text = ''
        res.on('data', (d) => {
          text += d
        })
        res.on('end', () => done({ status: res.statusCode ?? 0, text }))
      })
      req.on('error', fail)
      req.end(JSON.stringify({ ...body, seed: 40 }))
    })
    expect(hostSpoof.status, hostSpoof.text).toBe(200)
    record(SUITE, {
      check: `SSRF: ${fieldCases.length} body fields and ${headerCases.length} forwarding-header sets naming a canary server`,
      tried: fieldCases.length + headerCases.length,
      survived,
      outcome:
        '422 for unknown fields/models; headers ignored (image URLs stay on the worker origin); canary never contacted',
    })
    // A spoofed Host (possible only where no edge fixes it, e.g. wrangler dev) is still no SSRF: the
    // worker never connects to it. Signed image URLs do follow it (the worker builds them from the
    // request URL, as Workers sets it from the routed hostname in production).
    const spoofedUrl = (JSON.parse(hostSpoof.text) as Generation).images[0]!.url
    record(SUITE, {
      check: 'raw Host header naming the canary (wrangler dev passes it through)',
      tried: 1,
      survived: canaryHits === 0 ? 1 : 0,
      outcome: `canary never contacted; image URL origin follows Host: ${spoofedUrl.startsWith(canaryUrl) ? 'yes' : 'no'}`,
    })
    expect(canaryHits).toBe(0)
    expect(survived).toBe(fieldCases.length + headerCases.length)
  })
})

describe('CORS and headers', () => {
  it('preflight and actual responses carry the documented CORS headers', async () => {
    const preflight = await call(`${rig.workerUrl}/v1/generations`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://app.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,content-type,idempotency-key',
      },
    })
    const allowHeaders = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase()
    const actual = await call(`${rig.workerUrl}/v1/generations/${madeByFirst.id}`, {
      headers: { Origin: 'https://app.example', Authorization: `Bearer ${firstKey}` },
    })
    const expose = (actual.headers.get('access-control-expose-headers') ?? '').toLowerCase()
    const sse = await fetch(`${rig.workerUrl}/v1/generations`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${firstKey}`,
        'Content-Type': 'application/json',
        Accept: 'text/event-stream',
      },
      body: JSON.stringify({ prompt: 'a blue car', seed: 11 }),
      signal: AbortSignal.timeout(30_000),
    })
    await sse.text()
    const image = await fetch(madeByFirst.images[0]!.url, { signal: AbortSignal.timeout(30_000) })
    await image.arrayBuffer()
    const checks: [string, boolean][] = [
      ['preflight 204', preflight.status === 204],
      ['preflight allows any origin', preflight.headers.get('access-control-allow-origin') === '*'],
      [
        'preflight allows POST',
        /post/i.test(preflight.headers.get('access-control-allow-methods') ?? ''),
      ],
      [
        'preflight allows Authorization, Content-Type, Idempotency-Key',
        ['authorization', 'content-type', 'idempotency-key'].every((h) => allowHeaders.includes(h)),
      ],
      ['preflight Max-Age 600', preflight.headers.get('access-control-max-age') === '600'],
      [
        'no credentialed CORS with a wildcard origin',
        preflight.headers.get('access-control-allow-credentials') === null &&
          actual.headers.get('access-control-allow-credentials') === null,
      ],
      [
        'response exposes X-Request-Id, Retry-After, RateLimit, Idempotent-Replayed',
        ['x-request-id', 'retry-after', 'ratelimit', 'idempotent-replayed'].every((h) =>
          expose.includes(h),
        ),
      ],
      [
        'JSON responses are application/json',
        (actual.headers.get('content-type') ?? '').startsWith('application/json'),
      ],
      [
        'SSE: text/event-stream, Cache-Control no-cache, no-transform, X-Accel-Buffering no',
        (sse.headers.get('content-type') ?? '').startsWith('text/event-stream') &&
          sse.headers.get('cache-control') === 'no-cache, no-transform' &&
          sse.headers.get('x-accel-buffering') === 'no',
      ],
      [
        'images: image/png, Cross-Origin-Resource-Policy cross-origin, private immutable caching',
        image.headers.get('content-type') === 'image/png' &&
          image.headers.get('cross-origin-resource-policy') === 'cross-origin' &&
          /^private, max-age=\d+, immutable$/.test(image.headers.get('cache-control') ?? ''),
      ],
    ]
    await table(
      `CORS and documented response headers (${checks.length} checks)`,
      'as configured in worker/src/index.ts and routes/images.ts',
      checks,
      async ([, ok]) => ok,
    )
  })
})

describe('image URLs are signed and unguessable', () => {
  it('tampered, stripped, expired-looking and transplanted signatures are refused', async () => {
    const url = new URL(madeByFirst.images[0]!.url)
    const sig = url.searchParams.get('sig')!
    const exp = url.searchParams.get('exp')!
    const other = await postGeneration(rig.workerUrl, firstKey, {
      prompt: 'a green frog',
      seed: 14,
    })
    const otherUrl = new URL((other.json as Generation).images[0]!.url)
    const variants: { name: string; mutate: (u: URL) => void; expect: [number, string] }[] = [
      {
        name: 'last signature char flipped',
        mutate: (u) =>
          u.searchParams.set('sig', `${sig.slice(0, -1)}${sig.endsWith('0') ? '1' : '0'}`),
        expect: [403, 'image_url_invalid'],
      },
      {
        name: 'signature removed',
        mutate: (u) => u.searchParams.delete('sig'),
        expect: [403, 'image_url_invalid'],
      },
      {
        name: 'empty signature',
        mutate: (u) => u.searchParams.set('sig', ''),
        expect: [403, 'image_url_invalid'],
      },
      {
        name: 'expiry extended',
        mutate: (u) => u.searchParams.set('exp', String(Number(exp) + 86_400)),
        expect: [403, 'image_url_invalid'],
      },
      {
        name: 'expiry in the past',
        mutate: (u) => u.searchParams.set('exp', '1000'),
        expect: [403, 'image_url_invalid'],
      },
      {
        name: "another image's signature",
        mutate: (u) => u.searchParams.set('sig', otherUrl.searchParams.get('sig')!),
        expect: [403, 'image_url_invalid'],
      },
      {
        name: 'signature moved to another image',
        mutate: (u) => (u.pathname = otherUrl.pathname),
        expect: [403, 'image_url_invalid'],
      },
      {
        name: 'uppercase name',
        mutate: (u) =>
          (u.pathname = u.pathname.toUpperCase().replace('/V1/IMAGES/', '/v1/images/')),
        expect: [404, 'image_not_found'],
      },
      {
        name: 'path traversal in name',
        mutate: (u) => (u.pathname = '/v1/images/..%2f..%2fapi-keys'),
        expect: [404, 'image_not_found'],
      },
    ]
    const refused: string[] = []
    for (const v of variants) {
      const u = new URL(url)
      v.mutate(u)
      const response = await call(u.toString())
      refused.push(
        isError(response, ...v.expect)
          ? 'refused'
          : `${v.name}: ${response.status} ${response.text.slice(0, 120)}`,
      )
    }
    let survived = refused.filter((r) => r === 'refused').length
    // The untouched URL still works (so the refusals above are about the tampering).
    await fetchImage(madeByFirst.images[0]!)
    // Unguessable: a 256-bit HMAC (43 base64url chars) per URL; generation ids carry 128 random bits.
    const unguessable =
      /^[A-Za-z0-9_-]{43}$/.test(sig) && /^gen_[A-Za-z0-9_-]{22}$/.test(madeByFirst.id)
    if (unguessable) survived++
    record(SUITE, {
      check: `image URL tampering (${variants.length} variants) + signature/id entropy`,
      tried: variants.length + 1,
      survived,
      outcome: '403 image_url_invalid / 404 image_not_found; HMAC-SHA256 signatures, 128-bit ids',
    })
    expect(refused).toEqual(variants.map(() => 'refused'))
    expect(unguessable).toBe(true)
  })

  it('random single-character signature mutations never verify (fast-check seed 802)', async () => {
    const url = new URL(madeByFirst.images[0]!.url)
    const sig = url.searchParams.get('sig')!
    let refused = 0
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: sig.length - 1 }),
        fc.constantFrom(...'0123456789abcdefABCDEF-_'),
        async (position, char) => {
          fc.pre(sig[position] !== char)
          const u = new URL(url)
          u.searchParams.set('sig', `${sig.slice(0, position)}${char}${sig.slice(position + 1)}`)
          const response = await call(u.toString())
          expect(isError(response, 403, 'image_url_invalid')).toBe(true)
          refused++
        },
      ),
      { seed: 802, numRuns: 100 },
    )
    record(SUITE, {
      check: 'single-character signature mutations (fast-check seed 802)',
      tried: 100,
      survived: refused,
      outcome: '403 image_url_invalid every time',
    })
  })
})

describe('secrets never reach a log', () => {
  it('worker and backend logs of this suite contain no API key, backend secret or signing secret', () => {
    // Errors were provoked above (401s, 422s, tampered URLs); make the backend log a failure too.
    const secrets = [firstKey, secondKey, rig.backendSecret, rig.signingSecret]
    const parts = secrets.flatMap((s) => [s, s.slice(-20)])
    const leaks = parts.filter((p) => rig.logs.some((line) => line.includes(p)))
    record(SUITE, {
      check: `captured worker + backend log lines scanned for 4 secrets and their 20-char tails`,
      tried: parts.length,
      survived: parts.length - leaks.length,
      outcome: 'none found (wrangler shows vars as "(hidden)")',
    })
    expect(rig.logs.length).toBeGreaterThan(20)
    expect(leaks).toEqual([])
  })
})
