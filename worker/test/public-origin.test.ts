/**
 * PIFLOW_PUBLIC_ORIGIN: every absolute URL the worker emits uses it, whatever Host the client sent;
 * production refuses to run without a valid one.
 */
import { SELF } from 'cloudflare:test'
import { afterEach, describe, expect, it } from 'vitest'
import { backendAvailable, callWithVars, type ErrorJson, readSse, settleCalls } from './helpers.ts'

const ORIGIN = 'https://api.piflow.example'
const SPOOFED = 'http://evil.example'

afterEach(settleCalls)

/** A request whose URL and Host header both name the attacker's host. */
const spoofed = (vars: Record<string, string>, path: string, init: RequestInit = {}) =>
  callWithVars(vars, `${SPOOFED}${path}`, {
    ...init,
    headers: { ...(init.headers as Record<string, string>), Host: 'evil.example' },
  })

describe('PIFLOW_PUBLIC_ORIGIN', () => {
  it('model file URLs use it, not the Host', async () => {
    const res = await spoofed({ PIFLOW_PUBLIC_ORIGIN: `${ORIGIN}/` }, '/v1/models')
    const text = await res.text()
    expect(res.status).toBe(200)
    expect(text).not.toContain('evil.example')
    const list = JSON.parse(text) as { data: { files: { url: string }[] }[] }
    const urls = list.data.flatMap((m) => m.files.map((f) => f.url))
    expect(urls.length).toBeGreaterThan(0)
    // The trailing slash of the setting is normalised away.
    for (const url of urls) expect(url.startsWith(`${ORIGIN}/v1/models/`)).toBe(true)
  })

  it('without it (local mode), URLs follow the request: what production must not do', async () => {
    const res = await spoofed({}, '/v1/models')
    const list = (await res.json()) as { data: { files: { url: string }[] }[] }
    expect(list.data[0]!.files[0]!.url.startsWith(`${SPOOFED}/v1/models/`)).toBe(true)
  })

  it.skipIf(!backendAvailable())(
    'signed image URLs in JSON, SSE and GET use it, and the images download from it',
    async () => {
      const vars = { PIFLOW_PUBLIC_ORIGIN: ORIGIN }
      const post = await spoofed(vars, '/v1/generations', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'red apple' }),
      })
      const text = await post.text()
      expect(post.status, text).toBe(200)
      expect(text).not.toContain('evil.example')
      const gen = JSON.parse(text) as { id: string; images: { url: string }[] }
      const url = new URL(gen.images[0]!.url)
      expect(url.origin).toBe(ORIGIN)
      // The signature is over the path, so the URL works once it reaches the real host.
      const image = await SELF.fetch(`http://piflow.test${url.pathname}${url.search}`)
      expect(image.status).toBe(200)

      const get = await spoofed(vars, `/v1/generations/${gen.id}`)
      expect(await get.text()).not.toContain('evil.example')
      const events = await readSse(
        await spoofed(vars, `/v1/generations/${gen.id}`, {
          headers: { Accept: 'text/event-stream' },
        }),
      )
      expect(events.map((e) => e.event)).toContain('image')
      for (const event of events) expect(event.data).not.toContain('evil.example')
    },
  )

  it('production without a valid origin is a 500 config error on every route', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{}, /PIFLOW_PUBLIC_ORIGIN is required in production/],
      [{ PIFLOW_PUBLIC_ORIGIN: 'REPLACE_WITH_PUBLIC_ORIGIN' }, /must be an origin/],
      [{ PIFLOW_PUBLIC_ORIGIN: 'https://api.example.com/v1' }, /must be an origin/],
      [{ PIFLOW_PUBLIC_ORIGIN: 'ftp://api.example.com' }, /must be an origin/],
    ]
    for (const [vars, message] of cases) {
      for (const path of ['/healthz', '/v1/models']) {
        const res = await callWithVars({ PIFLOW_ENV: 'production', ...vars }, path)
        expect(res.status).toBe(500)
        const body = (await res.json()) as ErrorJson
        expect(body.error.code).toBe('server_misconfigured')
        expect(body.error.message).toMatch(message)
      }
    }
    const ok = await callWithVars(
      { PIFLOW_ENV: 'production', PIFLOW_PUBLIC_ORIGIN: ORIGIN },
      `${SPOOFED}/v1/models`,
    )
    expect(ok.status).toBe(200)
    expect(await ok.text()).not.toContain('evil.example')
  })
})
