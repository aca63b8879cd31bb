/**
 * @module protocol
 * What every conformance check shares about the protocol itself: the secret header and the JSON error
 * shape `{ error: { code, message }, requestId }` (backend/PROTOCOL.md "Common behaviour").
 */

import assert from 'node:assert/strict'

export const SECRET_HEADER = 'X-Piflow-Backend-Secret'

/** Asserts `response` is `status` with the protocol's JSON error body of `code`. */
export async function expectError(response: Response, status: number, code: string) {
  const text = await response.text()
  assert.equal(
    response.status,
    status,
    `expected ${status} ${code}, got ${response.status}: ${text}`,
  )
  let body: { error?: { code?: unknown; message?: unknown }; requestId?: unknown }
  try {
    body = JSON.parse(text)
  } catch {
    assert.fail(`error body is not JSON: ${text.slice(0, 200)}`)
  }
  assert.equal(body.error?.code, code, `error code: ${text}`)
  assert.equal(typeof body.error?.message, 'string', 'error.message must be a string')
  assert.equal(typeof body.requestId, 'string', 'requestId must be a string')
}
