/**
 * @module cache
 * Seeded requests are deterministic, so their results are cached: the normalised request is hashed
 * into a synthetic GET URL for the Cache API (which only keys GET requests), backed by an R2 copy
 * (`results/<hash>.json`) because the Cache API is per data center and may evict. Images are already
 * in R2 (content-addressed). A hit never touches a backend. Keys are scoped per API key so one tenant
 * cannot learn from timing what another has generated. In front of both sits a small per-isolate
 * memo: entries are immutable (the key includes the model file's sha256), so it can never be stale.
 */
import { sha256Hex } from './crypto.ts'
import type { GenerationRecord, NormalizedRequest, ProgressInfo, StoredImage } from './records.ts'

const CACHE_NAME = 'piflow-results'
const CACHE_ORIGIN = 'https://cache.piflow.internal'
const CACHE_TTL_SECONDS = 7 * 24 * 60 * 60

/** What a cache entry holds: enough to build a `cached: true` record. */
export interface CachedResult {
  images: StoredImage[]
  integration: GenerationRecord['integration']
  backends: string[]
}

/**
 * The progress a cache hit's streams replay: one event per NFE of the request's schedule (step, nfe,
 * σ; no preview), so a client that expects `progress` × nfe before the images gets them, with the ids
 * a generated stream would use. The `id` event's `cached: true` says no step was run.
 */
export function cachedSteps(nfe: number, sigmas: readonly number[] | undefined): ProgressInfo[] {
  return Array.from({ length: nfe }, (_, k) => {
    const sigma = sigmas?.[k]
    return { step: k + 1, nfe, ...(sigma === undefined ? {} : { sigma }) }
  })
}

/** The `cached: true` record of a cache hit, from the running record of its request. */
export function cacheHitRecord(
  base: GenerationRecord,
  hit: CachedResult,
  steps: ProgressInfo[],
): GenerationRecord {
  const nfe = base.request.nfe
  return {
    ...base,
    status: 'succeeded',
    cached: true,
    progress: { step: nfe, nfe },
    steps,
    images: hit.images,
    integration: hit.integration,
    timings: { ...base.timings, totalMs: Date.now() - Date.parse(base.createdAt) },
    completedAt: new Date().toISOString(),
  }
}

/** JSON with object keys sorted, so equal requests hash equally whatever their field order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** The cache key of a normalised request for one tenant. */
export async function cacheKey(keyId: string, request: NormalizedRequest): Promise<string> {
  return sha256Hex(`v1|${keyId}|${canonicalJson(request)}`)
}

const cacheRequest = (hash: string) => new Request(`${CACHE_ORIGIN}/results/${hash}`)

const MEMO_ENTRIES = 512
const memo = new Map<string, CachedResult>()

function remember(hash: string, result: CachedResult): void {
  memo.delete(hash)
  memo.set(hash, result)
  // Map iteration order is insertion order: the first key is the least recently used.
  if (memo.size > MEMO_ENTRIES) memo.delete(memo.keys().next().value!)
}

/** Looks a result up: isolate memo, Cache API, then R2 (re-filling the faster tiers on the way). */
export async function lookupResult(
  hash: string,
  bucket: R2Bucket,
  waitUntil: (p: Promise<unknown>) => void,
): Promise<CachedResult | undefined> {
  const memoised = memo.get(hash)
  if (memoised) {
    remember(hash, memoised)
    return memoised
  }
  const cache = await caches.open(CACHE_NAME)
  const hit = await cache.match(cacheRequest(hash))
  if (hit) {
    const result = (await hit.json()) as CachedResult
    remember(hash, result)
    return result
  }
  const object = await bucket.get(`results/${hash}.json`)
  if (!object) return undefined
  const text = await object.text()
  waitUntil(cache.put(cacheRequest(hash), cacheResponse(text)))
  const result = JSON.parse(text) as CachedResult
  remember(hash, result)
  return result
}

/** Test hook: empties the isolate memo (to exercise the Cache API and R2 tiers). */
export function forgetMemo(): void {
  memo.clear()
}

function cacheResponse(text: string): Response {
  return new Response(text, {
    headers: {
      'Content-Type': 'application/json',
      'Cache-Control': `public, max-age=${CACHE_TTL_SECONDS}`,
    },
  })
}

/** Stores a finished result: in this isolate's memo at once, in R2 and the Cache API concurrently. */
export async function storeResult(
  hash: string,
  result: CachedResult,
  bucket: R2Bucket,
): Promise<void> {
  // This isolate answers repeats at once; the shared tiers are written concurrently.
  remember(hash, result)
  const text = JSON.stringify(result)
  await Promise.all([
    bucket.put(`results/${hash}.json`, text, {
      httpMetadata: { contentType: 'application/json' },
    }),
    caches.open(CACHE_NAME).then((cache) => cache.put(cacheRequest(hash), cacheResponse(text))),
  ])
}
