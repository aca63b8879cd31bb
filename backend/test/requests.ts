/**
 * @module requests
 * Request builders for the backend tests: protocol inputs for the shipped default model and a
 * `/forward` call carrying the shared secret.
 */
import { randn } from '@piflow/policy'
import type { SafetensorsTensor } from '@piflow/protocol'
import type { BackendService } from '../../scripts/local-stack.ts'

/** The shipped default model. */
export const MODEL = 'piflow-emoji'

/** Seeded `/forward` (and `/step`) tensors for `batch` rows at noise level `sigma`. */
export function inputs(seed: number, batch = 1, sigma = 0.8): Record<string, SafetensorsTensor> {
  const tokens = new BigInt64Array(batch * 16)
  for (let i = 0; i < tokens.length; i++) tokens[i] = BigInt((i * 13 + seed) % 40)
  return {
    x: {
      dtype: 'F32',
      shape: [batch, 3, 32, 32],
      data: randn(new Float32Array(batch * 3072), seed),
    },
    sigma: { dtype: 'F32', shape: [batch], data: new Float32Array(batch).fill(sigma) },
    tokens: { dtype: 'I64', shape: [batch, 16], data: tokens },
  }
}

/** POST `body` to the model's `/forward` with the backend's secret. */
export function forward(
  backend: BackendService,
  body: Uint8Array,
  init: RequestInit = {},
  model = MODEL,
) {
  return fetch(`${backend.url}/v1/models/${model}/forward`, {
    method: 'POST',
    ...init,
    headers: {
      'Content-Type': 'application/octet-stream',
      'X-Piflow-Backend-Secret': backend.secret,
      ...init.headers,
    },
    body: body as Uint8Array<ArrayBuffer>,
  })
}
