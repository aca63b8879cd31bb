import { env, SELF } from 'cloudflare:test'
import { MAX_COUNT } from '@piflow/protocol'
import { describe, expect, it } from 'vitest'
import { sha256Hex } from '../src/crypto.ts'
import { BASE, generate } from './helpers.ts'

interface ModelJson {
  id: string
  manifest: { sampling: { nfeOptions: number[] }; files: Record<string, { sha256: string }> }
  files: { key: string; url: string; sha256: string; bytes: number; role: string }[]
}

describe('models', () => {
  it('lists the served models with manifests and download URLs', async () => {
    const res = await SELF.fetch(`${BASE}/v1/models`)
    expect(res.status).toBe(200)
    const list = (await res.json()) as { object: string; data: ModelJson[] }
    expect(list.object).toBe('list')
    // wrangler.toml's PIFLOW_MODELS, in its order (the first is the default model)
    expect(list.data.map((m) => m.id)).toEqual(
      (env as { PIFLOW_MODELS: string }).PIFLOW_MODELS.split(','),
    )
    expect(list.data.map((m) => m.id)).toContain('piflow-emoji')
    const model = list.data[0]!
    expect(model.manifest.sampling.nfeOptions).toContain(4)
    expect(model.files.map((f) => f.role).sort()).toContain('student')
  })

  it('serves model files whose bytes match the manifest, with ETag revalidation', async () => {
    const model = (await (await SELF.fetch(`${BASE}/v1/models/piflow-emoji`)).json()) as ModelJson
    const tokenizer = model.files.find((f) => f.role === 'tokenizer')!
    const res = await SELF.fetch(tokenizer.url)
    expect(res.status).toBe(200)
    expect(res.headers.get('Cache-Control')).toContain('immutable')
    const bytes = new Uint8Array(await res.arrayBuffer())
    expect(bytes.byteLength).toBe(tokenizer.bytes)
    expect(await sha256Hex(bytes)).toBe(tokenizer.sha256)
    const again = await SELF.fetch(tokenizer.url, {
      headers: { 'If-None-Match': `"${tokenizer.sha256}"` },
    })
    expect(again.status).toBe(304)
  })

  it('404 for unknown models and files; nothing outside the manifest is reachable', async () => {
    expect((await SELF.fetch(`${BASE}/v1/models/nope`)).status).toBe(404)
    expect((await SELF.fetch(`${BASE}/v1/models/piflow-emoji/files/nope`)).status).toBe(404)
    expect((await SELF.fetch(`${BASE}/v1/models/piflow-emoji/files/__proto__`)).status).toBe(404)
    expect((await SELF.fetch(`${BASE}/piflow-emoji/manifest.json`)).status).toBe(404)
  })
})

describe('OpenAPI', () => {
  it('documents every route with the schemas the handlers enforce', async () => {
    const res = await SELF.fetch(`${BASE}/openapi.json`)
    expect(res.status).toBe(200)
    const doc = (await res.json()) as {
      openapi: string
      paths: Record<string, Record<string, unknown>>
      components: {
        schemas: Record<
          string,
          {
            properties: Record<string, Record<string, unknown>>
            additionalProperties?: boolean
            required?: string[]
          }
        >
      }
    }
    expect(doc.openapi).toBe('3.1.0')
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/generations',
        '/v1/generations/{id}',
        '/v1/models',
        '/v1/models/{id}',
        '/v1/images/{name}',
      ]),
    )
    const request = doc.components.schemas['GenerationRequest']!
    expect(request.required).toEqual(['prompt'])
    expect(request.additionalProperties).toBe(false)
    expect(request.properties['count']).toMatchObject({
      type: 'integer',
      minimum: 1,
      maximum: MAX_COUNT,
    })
    expect(request.properties['seed']).toMatchObject({ minimum: 0, maximum: 2 ** 32 - 1 })
    // What the document says is what the handler enforces.
    const over = await generate({
      prompt: 'apple',
      count: (request.properties['count']!['maximum'] as number) + 1,
    })
    expect(over.status).toBe(422)
    for (const ref of JSON.stringify(doc).match(/#\/components\/schemas\/\w+/g) ?? []) {
      expect(doc.components.schemas[ref.split('/').pop()!], ref).toBeDefined()
    }
  })
})
