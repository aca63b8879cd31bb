/**
 * @module test/support/step-client
 * A generation as a client of the backend protocol alone makes it: one `POST …/step` per NFE
 * segment, encoded and decoded with the generation contract of `@piflow/protocol` (the worker's own
 * codec): what the benches time and the suites compare the worker against.
 */
import type { Manifest } from '@piflow/models'
import {
  conditioningTensors,
  decodeStepResponse,
  encodeStepRequest,
  forwardInputs,
  initialLatents,
  latentShape,
  SECRET_HEADER,
  samplingFor,
  stepSegment,
  TENSORS_CONTENT_TYPE,
} from '@piflow/protocol'

/** One image of `seed` at the default NFE through `backend`'s /step; returns the final state. */
export async function generateOverSteps(
  backend: { url: string; secret: string },
  manifest: Manifest,
  tokenIds: readonly number[],
  seed: number,
): Promise<Float32Array> {
  const nfe = manifest.sampling.defaultNfe
  const shape = latentShape(manifest, 1)
  const sampling = samplingFor(manifest, nfe)
  const conditioning = conditioningTensors(manifest, tokenIds, {
    count: 1,
    guidance: manifest.guidance.default,
  })
  let x = initialLatents(manifest, seed, 1)
  for (let k = 0; k < sampling.schedule.steps.length; k++) {
    const segment = stepSegment(sampling, shape, k)
    const body = encodeStepRequest(
      forwardInputs(shape, x, segment.sigmaSrc, conditioning),
      { nfe },
      segment,
    )
    const response = await fetch(`${backend.url}/v1/models/${manifest.id}/step`, {
      method: 'POST',
      headers: { 'Content-Type': TENSORS_CONTENT_TYPE, [SECRET_HEADER]: backend.secret },
      body: body as Uint8Array<ArrayBuffer>,
    })
    if (!response.ok) throw new Error(`step → ${response.status}: ${await response.text()}`)
    x = decodeStepResponse(new Uint8Array(await response.arrayBuffer()), shape)
  }
  return x
}
