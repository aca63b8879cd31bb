import { describe, expect, it } from 'vitest'
import { call, type ErrorJson, generate } from './helpers.ts'

const post = (body: BodyInit | null, headers: Record<string, string>) =>
  call('/v1/generations', { method: 'POST', headers, body })

async function fieldsOf(res: Response): Promise<string[]> {
  expect(res.status).toBe(422)
  const body = (await res.json()) as ErrorJson
  expect(body.error.code).toBe('validation_failed')
  return (body.error.fields ?? []).map((f) => f.path)
}

describe('request validation', () => {
  it('415 for a body that is not JSON', async () => {
    const res = await post('prompt=apple', { 'Content-Type': 'application/x-www-form-urlencoded' })
    expect(res.status).toBe(415)
    expect(((await res.json()) as ErrorJson).error.code).toBe('unsupported_media_type')
    expect((await post('{}', {})).status).toBe(415)
  })

  it('400 for malformed JSON', async () => {
    const res = await post('{"prompt": "apple",', { 'Content-Type': 'application/json' })
    expect(res.status).toBe(400)
    expect(((await res.json()) as ErrorJson).error.code).toBe('malformed_json')
  })

  it('413 from Content-Length before reading', async () => {
    const body = JSON.stringify({ prompt: 'a'.repeat(20_000) })
    const res = await post(body, { 'Content-Type': 'application/json' })
    expect(res.status).toBe(413)
    expect(((await res.json()) as ErrorJson).error.code).toBe('payload_too_large')
  })

  it('413 while streaming a body without Content-Length', async () => {
    const chunk = new TextEncoder().encode(' '.repeat(4096))
    let sent = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 16) controller.enqueue(chunk)
        else controller.close()
      },
    })
    const res = await post(stream, { 'Content-Type': 'application/json' })
    expect(res.status).toBe(413)
  })

  it('422 lists every bad field: unknown keys, types and ranges', async () => {
    const res = await generate({ prompt: 'apple', seed: 2 ** 32, count: 0, extra: true, nfe: 2.5 })
    expect((await fieldsOf(res)).sort()).toEqual(['count', 'extra', 'nfe', 'seed'])
  })

  it('422 for values the model does not offer', async () => {
    const res = await generate({ prompt: 'apple', nfe: 3, size: 100, guidance: 99 })
    expect((await fieldsOf(res)).sort()).toEqual(['guidance', 'nfe', 'size'])
  })

  it('422 for empty, too long (characters or tokens) prompts and too many images', async () => {
    expect(await fieldsOf(await generate({ prompt: '   ' }))).toEqual(['prompt'])
    expect(await fieldsOf(await generate({ prompt: 'a'.repeat(1001) }))).toEqual(['prompt'])
    const words = Array.from({ length: 17 }, () => 'apple').join(' ')
    expect(await fieldsOf(await generate({ prompt: words }))).toEqual(['prompt'])
    expect(await fieldsOf(await generate({ prompt: 'apple', count: 5 }))).toEqual(['count'])
  })

  it('422 for an unknown model', async () => {
    expect(await fieldsOf(await generate({ prompt: 'apple', model: 'nope' }))).toEqual(['model'])
  })

  it('400 for a malformed Idempotency-Key', async () => {
    const res = await generate(
      { prompt: 'apple', seed: 1 },
      { headers: { 'Idempotency-Key': 'x'.repeat(300) } },
    )
    expect(res.status).toBe(400)
    expect(((await res.json()) as ErrorJson).error.code).toBe('invalid_idempotency_key')
  })
})
