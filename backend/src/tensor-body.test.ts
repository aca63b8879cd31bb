import { encodeSafetensors } from '@piflow/protocol'
import { describe, expect, it } from 'vitest'
import { InvalidInputError } from './errors.ts'
import { readTensorBody } from './tensor-body.ts'

/** A POST whose body arrives in `chunkBytes` pieces; `pulled()` counts the bytes the reader took. */
function streamedRequest(body: Uint8Array, chunkBytes: number, withLength: boolean) {
  let offset = 0
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= body.byteLength) return controller.close()
      controller.enqueue(body.slice(offset, offset + chunkBytes))
      offset += chunkBytes
    },
  })
  const headers: Record<string, string> = withLength
    ? { 'Content-Length': `${body.byteLength}` }
    : {}
  const request = new Request('http://backend/v1/models/m/forward', {
    method: 'POST',
    body: stream,
    headers,
    duplex: 'half',
  } as RequestInit)
  return { request, pulled: () => Math.min(offset, body.byteLength) }
}

const valid = encodeSafetensors(
  { x: { dtype: 'F32', shape: [3, 5], data: new Float32Array(15).map((_, i) => i) } },
  { nfe: '4' },
)

describe('readTensorBody', () => {
  for (const withLength of [true, false]) {
    it(`returns a valid body byte for byte, in chunks of 1, 7 and 4096 (Content-Length: ${withLength})`, async () => {
      for (const chunk of [1, 7, 4096]) {
        const { request } = streamedRequest(valid, chunk, withLength)
        expect(await readTensorBody(request)).toEqual(valid)
      }
    })

    it(`refuses junk after 8 bytes and drains the rest (Content-Length: ${withLength})`, async () => {
      // In 3-byte pieces the first check reads its 8 bytes from three chunks.
      for (const [bytes, chunk] of [
        [64 * 1024, 3],
        [4 * 1024 * 1024, 64 * 1024],
      ] as const) {
        const junk = new Uint8Array(bytes).fill(0x41)
        const { request, pulled } = streamedRequest(junk, chunk, withLength)
        const error = await readTensorBody(request).catch((e: unknown) => e)
        expect(error).toBeInstanceOf(InvalidInputError)
        expect(error).toMatchObject({ status: 400, code: 'malformed_safetensors' })
        expect((error as InvalidInputError).message).toContain('header_too_large')
        // Drained to the end, so the 400 goes out on a connection that is still usable.
        expect(pulled()).toBe(junk.byteLength)
      }
    })
  }

  it('refuses a header that runs past the declared Content-Length from its first 8 bytes', async () => {
    const truncated = valid.subarray(0, 20)
    const { request } = streamedRequest(truncated, 4096, true)
    await expect(readTensorBody(request)).rejects.toThrow(/header_out_of_bounds/)
  })

  it('leaves bodies under 8 bytes and empty bodies to the decoder', async () => {
    expect(await readTensorBody(streamedRequest(new Uint8Array(5), 2, true).request)).toHaveLength(
      5,
    )
    const empty = new Request('http://backend/', { method: 'POST' })
    expect(await readTensorBody(empty)).toHaveLength(0)
  })
})
