/**
 * @module idempotency
 * `Idempotency-Key` on `POST /v1/generations`: a retry with the same key and body replays the first
 * request's generation instead of running another; the same key with another body is refused. The
 * tenant's Ledger decides, so concurrent duplicates cannot both run.
 */
import { canonicalJson } from './cache.ts'
import { sha256Hex } from './crypto.ts'
import type { Ledger } from './durable/ledger.ts'
import { ApiError, BadRequestError, ConflictError } from './errors.ts'

/** The request's key, undefined without one; 400 when it is not 1-255 printable ASCII characters. */
export function idempotencyKeyOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  // RFC 8941 sf-string form ("…") and a bare token are both accepted.
  const key = /^"(.*)"$/.exec(header)?.[1] ?? header
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw new BadRequestError(
      'invalid_idempotency_key',
      'Idempotency-Key must be 1-255 printable ASCII characters',
    )
  }
  return key
}

/**
 * Reserves `key` for the new generation `id`. Returns the id of the generation to replay when the key
 * was already used with this body (and that one finished); undefined when `id` now owns the key.
 * @throws {ConflictError} 409 while the first request with this key still runs
 * @throws {ApiError} 422 when the key was used with another body
 */
export async function claimIdempotencyKey(
  ledger: DurableObjectStub<Ledger>,
  key: string,
  body: unknown,
  id: string,
): Promise<string | undefined> {
  const fingerprint = await sha256Hex(canonicalJson(body))
  const decision = await ledger.beginIdempotent(key, fingerprint, id)
  if (decision.kind === 'running') {
    throw new ConflictError(
      'idempotency_in_progress',
      `A request with this Idempotency-Key is still running (${decision.generationId})`,
      decision.retryAfter,
    )
  }
  if (decision.kind === 'mismatch') {
    throw new ApiError(
      422,
      'idempotency_key_reused',
      'This Idempotency-Key was used with a different request body',
    )
  }
  return decision.kind === 'replay' ? decision.generationId : undefined
}
