/** Shared helpers of the workerd test files. */
import { createExecutionContext, env, SELF, waitOnExecutionContext } from 'cloudflare:test'
import { inject } from 'vitest'
import type { Env } from '../src/env.ts'
import app from '../src/index.ts'
import { type ApiKeyRecord, createApiKeyRecord } from '../src/keys.ts'
import type { GenerationRecord, NormalizedRequest } from '../src/records.ts'

export const BASE = 'http://piflow.test'
export const devKey = () => env.PIFLOW_DEV_API_KEY!
export const backendUrl = () => inject('backendUrl')
export const backendSecret = () => inject('backendSecret')
export const backendAvailable = () => inject('backendAvailable')

/** `init` with `Authorization: Bearer <key>` (the dev key unless given; `key: null` sends none). */
function withKey(init?: RequestInit & { key?: string | null }): RequestInit {
  const headers = new Headers(init?.headers)
  const key = init?.key === undefined ? devKey() : init.key
  if (key !== null) headers.set('Authorization', `Bearer ${key}`)
  return { ...init, headers }
}

/** Authorised request to the worker under test. */
export function call(
  path: string,
  init?: RequestInit & { key?: string | null },
): Promise<Response> {
  return SELF.fetch(`${BASE}${path}`, withKey(init))
}

const contexts: ExecutionContext[] = []

/**
 * Like {@link call}, against the worker with some vars replaced (same KV, R2 and Durable Objects);
 * `url` may be a path or a whole URL (any host). Await {@link settleCalls} after the test.
 */
export async function callWithVars(
  /** replaced bindings; `undefined` unsets one */
  vars: { [K in keyof Env]?: Env[K] | undefined },
  url: string,
  init?: RequestInit & { key?: string | null },
): Promise<Response> {
  const ctx = createExecutionContext()
  contexts.push(ctx)
  const request = new Request(url.startsWith('/') ? `${BASE}${url}` : url, withKey(init))
  return app.fetch(request, { ...env, ...vars }, ctx)
}

/** Waits for the `waitUntil` work (running generations) of {@link callWithVars} requests. */
export async function settleCalls(): Promise<void> {
  await Promise.all(contexts.splice(0).map((ctx) => waitOnExecutionContext(ctx)))
}

/** POST /v1/generations with a JSON body. */
export function generate(
  body: unknown,
  init?: { key?: string | null; headers?: Record<string, string> },
): Promise<Response> {
  return call('/v1/generations', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...init?.headers },
    body: JSON.stringify(body),
    ...(init?.key !== undefined ? { key: init.key } : {}),
  })
}

let counter = 0
/** Creates an API key with the given record options directly in KV; returns the key. */
export async function createKey(
  options: Partial<Omit<ApiKeyRecord, 'hash'>> = {},
): Promise<string> {
  const id = `t${Date.now().toString(36)}${(counter++).toString(36)}`
  const key = `pf_${id}_${'x'.repeat(8)}${crypto.randomUUID().replaceAll('-', '')}`
  const record = await createApiKeyRecord(key, {
    scopes: ['generations:write', 'generations:read', 'models:read'],
    ...options,
  })
  await env.API_KEYS.put(`key:${id}`, JSON.stringify(record))
  return key
}

/** The backend's request counter (from its /readyz stats): proves whether a request reached it. */
export async function backendRequests(): Promise<number> {
  const res = await fetch(`${backendUrl()}/readyz`)
  const body = (await res.json()) as { stats: { requests: number } }
  return body.stats.requests
}

/** Reads a whole SSE response into events (ignoring comments). */
export async function readSse(
  res: Response,
): Promise<{ event: string; data: string; id?: string }[]> {
  const text = await res.text()
  const events: { event: string; data: string; id?: string }[] = []
  for (const block of text.split(/\n\n/)) {
    let event = 'message'
    const data: string[] = []
    let id: string | undefined
    for (const line of block.split('\n')) {
      if (line.startsWith(':') || line === '') continue
      const [field, ...rest] = line.split(':')
      const value = rest.join(':').replace(/^ /, '')
      if (field === 'event') event = value
      else if (field === 'data') data.push(value)
      else if (field === 'id') id = value
    }
    if (data.length > 0) events.push({ event, data: data.join('\n'), ...(id ? { id } : {}) })
  }
  return events
}

export interface ErrorJson {
  error: { code: string; message: string; fields?: { path: string; message: string }[] }
  requestId: string
}

/** A `running` record of a 4-NFE, one-image request, for tests that store records themselves. */
export function runningRecord(
  id: string,
  request: Partial<NormalizedRequest> = {},
  fields: Partial<GenerationRecord> = {},
): GenerationRecord {
  return {
    id,
    requestId: 'req_test',
    status: 'running',
    request: {
      model: 'piflow-emoji',
      modelVersion: 'test',
      prompt: 'red apple',
      nfe: 4,
      seed: 1,
      size: 32,
      guidance: 3,
      count: 1,
      format: 'png',
      ...request,
    },
    seeded: true,
    cached: false,
    progress: { step: 0, nfe: 4 },
    images: [],
    integration: 'edge',
    backends: [],
    timings: { totalMs: 0, forwardMs: 0, integrateMs: 0, encodeMs: 0 },
    createdAt: new Date().toISOString(),
    completedAt: null,
    error: null,
    ...fields,
  }
}
