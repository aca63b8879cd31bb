/**
 * @module @piflow/sdk
 * Client for the piflow API: few-step π-Flow image generation. HTTP only: in-browser inference lives in
 * `@piflow/sdk/local` and is loaded lazily by `fallback: 'local'`.
 */
export type { ClientToken, TokenProvider } from './auth.ts'
export { type ClientOptions, createClient, type PiflowClient } from './client.ts'
export {
  ApiError,
  type FieldError,
  GenerationCanceledError,
  IdempotencyKeyReusedError,
  isApiError,
  isPiflowError,
  LocalInferenceError,
  NetworkError,
  PiflowError,
  TimeoutError,
  ValidationError,
} from './errors.ts'
export { LOCAL_FALLBACK_CODES } from './fallback.ts'
export { toBlob, toFile } from './image.ts'
export type { DownloadProgress, LocalOptions, LocalProvider } from './local/types.ts'
export type * from './types.ts'
