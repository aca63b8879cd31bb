import { env, SELF } from 'cloudflare:test'
import { decode } from 'fast-png'
import { describe, expect, it, vi } from 'vitest'
import { streamEventTypes } from '../../test/support/sse.ts'
import { forgetMemo } from '../src/cache.ts'
import { hmac, sha256Hex } from '../src/crypto.ts'
import {
  BASE,
  backendAvailable,
  backendRequests,
  call,
  createKey,
  type ErrorJson,
  generate,
  readSse,
} from './helpers.ts'

interface Generation {
  id: string
  status: string
  cached: boolean
  seed: number
  size: number
  images: { url: string; sha256: string; width: number; seed: number; data?: string }[]
  integration: string
  backends: string[]
  timings: { totalMs: number; forwardMs: number }
  progress: { step: number; nfe: number }
}

describe.skipIf(!backendAvailable())('generation through a real backend', () => {
  it('JSON: generates, stores and serves a signed PNG of the requested size', async () => {
    const res = await generate({ prompt: 'red apple', seed: 11, size: 64, count: 2 })
    expect(res.status).toBe(200)
    expect(res.headers.get('RateLimit')).toMatch(/^"images";r=\d+;t=\d+$/)
    expect(res.headers.get('RateLimit-Policy')).toMatch(/^"images";q=\d+;w=\d+$/)
    const gen = (await res.json()) as Generation
    expect(gen.status).toBe('succeeded')
    expect(gen.cached).toBe(false)
    expect(gen.integration).toBe('edge')
    expect(gen.backends).toEqual(['test-backend'])
    expect(gen.progress).toEqual({ step: 4, nfe: 4 })
    expect(gen.images.map((i) => i.seed)).toEqual([11, 12])
    // Different seeds give different images.
    expect(gen.images[0]!.sha256).not.toBe(gen.images[1]!.sha256)
    const image = await SELF.fetch(gen.images[0]!.url)
    expect(image.status).toBe(200)
    expect(image.headers.get('Content-Type')).toBe('image/png')
    expect(image.headers.get('Cross-Origin-Resource-Policy')).toBe('cross-origin')
    const bytes = new Uint8Array(await image.arrayBuffer())
    const png = decode(bytes)
    expect([png.width, png.height, png.channels]).toEqual([64, 64, 4])
    expect(await sha256Hex(bytes)).toBe(gen.images[0]!.sha256)
  })

  it('image URLs are signed: tampering or expiry is 403, bad names 404', async () => {
    const gen = (await (await generate({ prompt: 'pear', seed: 5 })).json()) as Generation
    const url = new URL(gen.images[0]!.url)
    const tampered = new URL(url)
    tampered.searchParams.set('sig', `${url.searchParams.get('sig')!.slice(0, -2)}AA`)
    expect((await SELF.fetch(tampered)).status).toBe(403)
    const resigned = new URL(url)
    resigned.searchParams.set('exp', '1000')
    expect(((await (await SELF.fetch(resigned)).json()) as ErrorJson).error.code).toBe(
      'image_url_invalid',
    )
    // A genuine signature over a past expiry is refused as expired.
    const name = url.pathname.split('/').pop()!
    const expired = new URL(url)
    expired.searchParams.set('exp', '1000')
    expired.searchParams.set('sig', await hmac(env.PIFLOW_SIGNING_SECRET!, `${name}.1000`))
    const res = await SELF.fetch(expired)
    expect(res.status).toBe(403)
    expect(((await res.json()) as ErrorJson).error.code).toBe('image_url_expired')
    expect((await SELF.fetch(`${BASE}/v1/images/..%2Fresults.png?exp=1&sig=x`)).status).toBe(404)
  })

  it('base64 responses inline the same bytes the URL serves', async () => {
    const gen = (await (
      await generate({ prompt: 'pear', seed: 5, response: 'base64' })
    ).json()) as Generation
    const bytes = new Uint8Array(await (await SELF.fetch(gen.images[0]!.url)).arrayBuffer())
    const inline = Uint8Array.from(atob(gen.images[0]!.data!), (c) => c.charCodeAt(0))
    expect(inline).toEqual(bytes)
  })

  it('SSE: id first, one progress per NFE with previews, image, done', async () => {
    const res = await generate(
      { prompt: 'smiling cat', seed: 3 },
      { headers: { Accept: 'text/event-stream' } },
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toContain('text/event-stream')
    expect(res.headers.get('Cache-Control')).toContain('no-transform')
    const events = await readSse(res)
    expect(events.map((e) => e.event)).toEqual(streamEventTypes(4))
    expect(events.map((e) => Number(e.id))).toEqual([0, 1, 2, 3, 4, 5, 6])
    const id = JSON.parse(events[0]!.data).id as string
    const progress = events.slice(1, 5).map((e) => JSON.parse(e.data))
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4])
    for (const p of progress) expect(p.preview).toMatch(/^data:image\/png;base64,/)
    const done = JSON.parse(events[6]!.data) as Generation
    expect(done.id).toBe(id)
    // The record is readable afterwards.
    const again = (await (await call(`/v1/generations/${id}`)).json()) as Generation
    expect(again.status).toBe('succeeded')
    expect(again.images[0]!.sha256).toBe(done.images[0]!.sha256)
  })

  it('generations are private to the key that made them', async () => {
    const gen = (await (await generate({ prompt: 'pear', seed: 6 })).json()) as Generation
    const other = await createKey()
    const res = await call(`/v1/generations/${gen.id}`, { key: other })
    expect(res.status).toBe(404)
    expect(((await res.json()) as ErrorJson).error.code).toBe('generation_not_found')
  })

  it('seeded repeats come from the cache without touching a backend', async () => {
    const body = { prompt: 'yellow banana', seed: 77, size: 128 }
    const first = (await (await generate(body)).json()) as Generation
    expect(first.cached).toBe(false)
    const before = await backendRequests()
    // Field order and whitespace do not split the cache key.
    const second = (await (
      await generate({ size: 128, seed: 77, prompt: '  yellow   banana ' })
    ).json()) as Generation
    expect(await backendRequests()).toBe(before)
    expect(second.cached).toBe(true)
    expect(second.id).not.toBe(first.id)
    expect(second.images.map((i) => i.sha256)).toEqual(first.images.map((i) => i.sha256))
    expect(second.backends).toEqual([])
    // A different size is a different request.
    const third = (await (await generate({ ...body, size: 64 })).json()) as Generation
    expect(third.cached).toBe(false)
    expect(await backendRequests()).toBeGreaterThan(before)
  })

  it('unseeded requests get a random seed and are never cached', async () => {
    const a = (await (await generate({ prompt: 'tree' })).json()) as Generation
    const b = (await (await generate({ prompt: 'tree' })).json()) as Generation
    expect(a.cached || b.cached).toBe(false)
    expect(a.seed).not.toBe(b.seed)
  })

  it('cache tiers: isolate memo → Cache API → R2 copy; without any tier it generates again', async () => {
    const body = { prompt: 'blue heart', seed: 9 }
    const resultKeys = async () =>
      (await env.IMAGES.list({ prefix: 'results/' })).objects.map((o) => o.key)
    const earlier = (await resultKeys()).length
    await generate(body)
    const cache = await caches.open('piflow-results')
    // The shared tiers are written after the response (waitUntil): wait for this result's R2 copy.
    const results = await vi.waitFor(async () => {
      const keys = await resultKeys()
      expect(keys.length).toBeGreaterThan(earlier)
      return keys
    })
    const dropCacheApi = async () => {
      for (const key of results) {
        await cache.delete(`https://cache.piflow.internal/results/${key.slice(8, -5)}`)
      }
    }
    // Cache API and memo gone: the R2 copy still answers without a backend call.
    await dropCacheApi()
    forgetMemo()
    let before = await backendRequests()
    const fromR2 = (await (await generate(body)).json()) as Generation
    expect(fromR2.cached).toBe(true)
    expect(await backendRequests()).toBe(before)
    // All tiers gone: a real generation again (proves the tiers above were what answered).
    await dropCacheApi()
    forgetMemo()
    await env.IMAGES.delete(results)
    before = await backendRequests()
    const fresh = (await (await generate(body)).json()) as Generation
    expect(fresh.cached).toBe(false)
    expect(await backendRequests()).toBeGreaterThan(before)
    expect(fresh.images[0]!.sha256).toBe(fromR2.images[0]!.sha256)
  })
})
