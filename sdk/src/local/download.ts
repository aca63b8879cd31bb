/**
 * @module local/download
 * Model files for in-browser inference: fetched with progress, checked against the manifest's byte
 * size (before buffering more than it) and sha256 (crypto.subtle), and kept in the Cache API when the
 * runtime has one. Cache entries are keyed by URL + sha256, so a new model version never hits a stale
 * entry, and are verified again on read (a corrupted entry is dropped and downloaded anew).
 */
import { LocalInferenceError } from '../errors.ts'
import type { DownloadProgress } from './types.ts'

/** A file as the manifest lists it. */
export interface FileSpec {
  key: string
  url: string
  sha256: string
  bytes: number
}

export interface DownloadOptions {
  fetch: typeof fetch
  cacheName: string | false
  onProgress: ((progress: DownloadProgress) => void) | undefined
  signal: AbortSignal | undefined
}

const toHex = (buffer: ArrayBuffer) =>
  Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('')

/** sha256 of `bytes` as lowercase hex. */
export const sha256Hex = async (bytes: Uint8Array) =>
  toHex(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>))

const openCache = async (name: string | false) => {
  if (!name || typeof caches === 'undefined') return undefined
  // Opaque origins and some privacy modes throw here: caching is an optimisation, never a failure.
  return caches.open(name).catch(() => undefined)
}

/** Downloads (or reads from the cache) one file and returns its verified bytes. */
export const loadFile = async (file: FileSpec, options: DownloadOptions): Promise<Uint8Array> => {
  const cache = await openCache(options.cacheName)
  const cacheKey = `${file.url}${file.url.includes('?') ? '&' : '?'}sha256=${file.sha256}`
  const cached = await cache?.match(cacheKey).catch(() => undefined)
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer())
    if (bytes.byteLength === file.bytes && (await sha256Hex(bytes)) === file.sha256) {
      options.onProgress?.({
        file: file.key,
        loadedBytes: file.bytes,
        totalBytes: file.bytes,
        cached: true,
      })
      return bytes
    }
    await cache?.delete(cacheKey)
  }

  const bytes = await download(file, options)
  const digest = await sha256Hex(bytes)
  if (digest !== file.sha256) {
    throw new LocalInferenceError(
      'integrity_mismatch',
      `${file.key}: sha256 ${digest} does not match the manifest's ${file.sha256}`,
    )
  }
  // Best effort: a full quota (QuotaExceededError) must not fail the generation.
  await cache
    ?.put(
      cacheKey,
      new Response(bytes as Uint8Array<ArrayBuffer>, {
        headers: { 'content-type': 'application/octet-stream' },
      }),
    )
    .catch(() => {})
  return bytes
}

const download = async (file: FileSpec, options: DownloadOptions) => {
  let response: Response
  try {
    response = await options.fetch(file.url, options.signal ? { signal: options.signal } : {})
  } catch (cause) {
    if (options.signal?.aborted) throw options.signal.reason
    throw new LocalInferenceError('download_failed', `${file.key}: cannot fetch ${file.url}`, {
      cause,
    })
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel()
    throw new LocalInferenceError(
      'download_failed',
      `${file.key}: HTTP ${response.status} for ${file.url}`,
    )
  }
  const declared = Number(response.headers.get('content-length') ?? file.bytes)
  // Refuse before allocating: a compressed transfer may report fewer bytes, never more.
  if (declared > file.bytes) {
    await response.body.cancel()
    throw sizeError(file, declared)
  }
  const bytes = new Uint8Array(file.bytes)
  let loaded = 0
  const reader = response.body.getReader()
  try {
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      if (loaded + value.byteLength > file.bytes) throw sizeError(file, loaded + value.byteLength)
      bytes.set(value, loaded)
      loaded += value.byteLength
      options.onProgress?.({
        file: file.key,
        loadedBytes: loaded,
        totalBytes: file.bytes,
        cached: false,
      })
    }
  } catch (error) {
    await reader.cancel().catch(() => {})
    if (options.signal?.aborted) throw options.signal.reason
    throw error instanceof LocalInferenceError
      ? error
      : new LocalInferenceError('download_failed', `${file.key}: download interrupted`, {
          cause: error,
        })
  }
  if (loaded !== file.bytes) throw sizeError(file, loaded)
  return bytes
}

const sizeError = (file: FileSpec, got: number) =>
  new LocalInferenceError(
    'integrity_mismatch',
    `${file.key}: got ${got} bytes, the manifest says ${file.bytes}`,
  )
