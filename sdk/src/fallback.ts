/**
 * @module fallback
 * `fallback: 'local'`: when the edge is unreachable or says the model should run here, the client
 * generates in the page with `@piflow/sdk/local`, which is imported on first use so the root entry
 * stays free of inference code. Never on auth or validation errors.
 */
import { ApiError, NetworkError } from './errors.ts'
import type { LocalGenerator, LocalOptions } from './local/types.ts'

/**
 * Error codes with which the edge says it cannot run the model now, so the browser may: an explicit
 * `run_locally`, or no inference backend configured / reachable (after retries).
 */
export const LOCAL_FALLBACK_CODES: readonly string[] = [
  'run_locally',
  'no_backends',
  'backends_unavailable',
]

/** Options of a client that decide its fallback. */
export interface FallbackOptions {
  fallback?: 'local' | false
  local?: LocalOptions
}

/** Whether `error` (of a call its caller did not abort) sends the call to the local path. */
export const fallsBack = (options: FallbackOptions, error: unknown, signal?: AbortSignal) =>
  options.fallback === 'local' &&
  !signal?.aborted &&
  (error instanceof NetworkError ||
    (error instanceof ApiError && LOCAL_FALLBACK_CODES.includes(error.code)))

/** The local generator of one client, created on first use (a lazily imported chunk). */
export const createLocalLoader = (options: FallbackOptions) => {
  let local: Promise<LocalGenerator> | undefined
  return () => {
    local ??= import('./local/index.ts').then((m) => m.createLocalGenerator(options.local))
    return local
  }
}

export type LocalLoader = ReturnType<typeof createLocalLoader>
