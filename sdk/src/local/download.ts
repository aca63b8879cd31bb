/**
 * @module local/download
 * Model files for in-browser inference: fetched with progress, checked against the manifest's byte
 * size (before buffering more than it) and sha256 (crypto.subtle), and kept in the Cache API when the
 * runtime has one. Cache entries are keyed by URL + sha256, so a new model version never hits a stale
 * entry, and are verified again on read (a corrupted entry is dropped and downloaded anew). Writing a
 * downloaded file to the cache (~0.1–0.2 s for a 17 MB student in Chromium) is not waited for: it runs
 * beside the session creation, and the caller awaits `stored` where it needs the entry written.
 * onnxruntime-web's runtime file has no manifest entry: it is keyed by URL + ORT version, its size
 * checked against Content-Length and a ceiling.
 */
import { LocalInferenceError } from '../errors.ts'
import type { DownloadProgress } from './types.ts'

/** A file as the manifest lists it (sha256 and size), or a runtime file (a version instead). */
export type FileSpec = { key: string; url: string } & (
  | { sha256: string; bytes: number }
  | { version: string }
)

/** Largest runtime file accepted (onnxruntime-web 1.30's largest .wasm is 28 MB). */
export const MAX_RUNTIME_BYTES = 64 * 2 ** 20

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

/** Whether `bytes` are the file's: the manifest's size and sha256 (a runtime file: not empty). */
const verified = async (file: FileSpec, bytes: Uint8Array) =>
  'sha256' in file
    ? bytes.byteLength === file.bytes && (await sha256Hex(bytes)) === file.sha256
    : bytes.byteLength > 0

/** A loaded file: its verified bytes, and when its Cache API entry is written (never rejects). */
export interface LoadedFile {
  bytes: Uint8Array
  stored: Promise<void>
}

const NOTHING_TO_STORE = Promise.resolve()

/** Downloads (or reads from the cache) one file and returns its verified bytes. */
export const loadFile = async (file: FileSpec, options: DownloadOptions): Promise<LoadedFile> => {
  const cache = await openCache(options.cacheName)
  const tag = 'sha256' in file ? `sha256=${file.sha256}` : `version=${file.version}`
  const cacheKey = `${file.url}${file.url.includes('?') ? '&' : '?'}${tag}`
  const cached = await cache?.match(cacheKey).catch(() => undefined)
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer())
    if (await verified(file, bytes)) {
      const size = bytes.byteLength
      options.onProgress?.({ file: file.key, loadedBytes: size, totalBytes: size, cached: true })
      return { bytes, stored: NOTHING_TO_STORE }
    }
    await cache?.delete(cacheKey)
  }

  const bytes = await download(file, options)
  if ('sha256' in file) {
    const digest = await sha256Hex(bytes)
    if (digest !== file.sha256) {
      throw new LocalInferenceError(
        'integrity_mismatch',
        `${file.key}: sha256 ${digest} does not match the manifest's ${file.sha256}`,
      )
    }
  }
  // Best effort: a full quota (QuotaExceededError) must not fail the generation. The Response copies
  // the bytes, so the caller may hand them on (to ORT) at once.
  const stored = cache
    ? cache
        .put(
          cacheKey,
          new Response(bytes as Uint8Array<ArrayBuffer>, {
            headers: { 'content-type': 'application/octet-stream' },
          }),
        )
        .catch(() => {})
    : NOTHING_TO_STORE
  return { bytes, stored }
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
  const length = response.headers.get('content-length')
  const declared = length === null ? undefined : Number(length)
  // A manifest file has its exact size; a runtime file only the ceiling, and its Content-Length is
  // a hint (the compressed size under Content-Encoding), used to allocate and to report progress.
  const limit = 'bytes' in file ? file.bytes : MAX_RUNTIME_BYTES
  // Refuse before allocating: a compressed transfer may report fewer bytes, never more.
  if (declared !== undefined && declared > limit) {
    await response.body.cancel()
    throw sizeError(file, declared, limit)
  }
  const hint = 'bytes' in file ? file.bytes : declared
  let bytes = new Uint8Array(hint ?? 2 ** 20)
  let loaded = 0
  const reader = response.body.getReader()
  try {
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      if (loaded + value.byteLength > limit) throw sizeError(file, loaded + value.byteLength, limit)
      if (loaded + value.byteLength > bytes.byteLength) {
        // A runtime file larger than its hint: grow by doubling, within the ceiling.
        const grown = new Uint8Array(Math.min(limit, 2 * (loaded + value.byteLength)))
        grown.set(bytes.subarray(0, loaded))
        bytes = grown
      }
      bytes.set(value, loaded)
      loaded += value.byteLength
      options.onProgress?.({
        file: file.key,
        loadedBytes: loaded,
        totalBytes: Math.max(hint ?? 0, loaded),
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
  if ('bytes' in file && loaded !== file.bytes) throw sizeError(file, loaded, file.bytes)
  return loaded === bytes.byteLength ? bytes : bytes.slice(0, loaded)
}

const sizeError = (file: FileSpec, got: number, limit: number) =>
  new LocalInferenceError(
    'integrity_mismatch',
    'bytes' in file
      ? `${file.key}: got ${got} bytes, the manifest says ${file.bytes}`
      : `${file.key}: got ${got} bytes, more than the ${limit} accepted`,
  )
