/**
 * The SDK end to end in real headless Chromium: the demo page (sdk/demo) generates remotely against
 * the local stack (backend + worker in workerd), then with the edge cut by the browser, locally via
 * onnxruntime-web WASM (CPU policy) and via WebGPU (SwiftShader adapter, WebGPU policy), and the images
 * are compared pixel by pixel.
 *
 * Tolerance (stated once, used for every comparison): the paths share noise, schedule, tokenizer and
 * policy code and differ only in float32 arithmetic (ORT node vs web ≈ 1e-6, WebGPU ≈ 5e-5 on the
 * network output), so after 8-bit quantisation at most a few pixels may land one level apart:
 * max |Δ| ≤ 2 levels and mean |Δ| ≤ 0.05 levels over the RGB channels.
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { browserUnavailable, launchChromium } from '../support/chromium.ts'
import { streamEventTypes } from '../support/sse.ts'
import { type Stack, startStack } from '../support/stack.ts'
import { type StaticServer, startStaticServer } from './support/static-server.ts'

const MAX_LEVEL_DIFF = 2
const MAX_MEAN_DIFF = 0.05

interface DemoImage {
  seed: number
  width: number
  height: number
  rgba: number[]
}
interface DemoResult {
  backend: string
  reason?: string
  integration: string
  requestId: string
  seed: number
  images: DemoImage[]
}

const INPUT = { prompt: 'red apple', seed: 7, size: 32 }

/** max and mean absolute difference over RGB (alpha is always 255). */
const diff = (a: DemoImage, b: DemoImage) => {
  expect(a.rgba.length).toBe(b.rgba.length)
  let max = 0
  let sum = 0
  let n = 0
  for (let i = 0; i < a.rgba.length; i++) {
    if (i % 4 === 3) continue
    const d = Math.abs(a.rgba[i]! - b.rgba[i]!)
    max = Math.max(max, d)
    sum += d
    n++
  }
  return { max, mean: sum / n }
}

/** Rough "not a blank or constant image" check: the pixels must vary. */
const spread = (image: DemoImage) => {
  const values = image.rgba.filter((_, i) => i % 4 !== 3)
  return Math.max(...values) - Math.min(...values)
}

const skipReason = browserUnavailable()

describe.skipIf(skipReason)('SDK in headless Chromium', () => {
  let server: StaticServer
  let browser: Browser
  let stack: Stack | undefined
  let stackError: unknown
  let page: Page

  // One context = one origin storage: pages opened in it share the Cache API (a reload, in effect).
  let context: BrowserContext
  const openDemo = async (withApi: boolean, on: BrowserContext = context, query = '') => {
    const p = await on.newPage()
    const api =
      withApi && stack ? `api=${encodeURIComponent(stack.workerUrl)}&key=${stack.apiKey}` : ''
    await p.goto(`${server.url}/demo/index.html?${[api, query].filter(Boolean).join('&')}`)
    await p.waitForFunction(() => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready)
    return p
  }
  /** The demo's overall load progress reports so far. */
  const loadStages = (p: Page) =>
    p.evaluate(() =>
      (
        window as unknown as { piflowDemo: { loadProgress: { stage: string }[] } }
      ).piflowDemo.loadProgress.map((e) => e.stage),
    )
  const ortServed = () => [...server.served.keys()].filter((path) => path.startsWith('/ort/'))
  const generate = (p: Page, path: 'auto' | 'wasm' | 'webgpu', input = INPUT) =>
    p.evaluate(
      ([path, input]) =>
        (
          window as unknown as {
            piflowDemo: { generate: (p: string, i: unknown) => Promise<DemoResult> }
          }
        ).piflowDemo.generate(path, input),
      [path, input] as const,
    )

  beforeAll(async () => {
    // The page loads the built package, exactly what npm would ship.
    execFileSync('npx', ['tsx', join(import.meta.dirname, '../../sdk/build.ts')], { stdio: 'pipe' })
    server = await startStaticServer()
    browser = await launchChromium({ webgpu: true })
    context = await browser.newContext()
    stack = await startStack().catch((error) => {
      stackError = error
      return undefined
    })
  }, 240_000)
  afterAll(async () => {
    await browser?.close()
    await server?.close()
    await stack?.stop()
  })

  let remote: DemoResult | undefined
  let wasm: DemoResult | undefined

  it('generates remotely against the local stack and shows the image', async () => {
    if (!stack) throw stackError // a broken stack fails the remote tests; the local ones still run
    page = await openDemo(true)
    remote = await generate(page, 'auto')
    expect(remote.backend).toBe('remote')
    expect(remote.requestId).toMatch(/^req_/)
    expect(remote.images).toHaveLength(1)
    expect(remote.images[0]).toMatchObject({ seed: 7, width: 32, height: 32 })
    expect(spread(remote.images[0]!)).toBeGreaterThan(30)
    expect(await page.locator('#gallery img').count()).toBe(1)
  })

  it('streams from the real worker, resumes by id, lists models and types its errors', async () => {
    if (!stack) throw stackError // a broken stack fails the remote tests; the local ones still run
    const p = await openDemo(true)
    const summary = await p.evaluate(
      async ([api, key]) => {
        // The demo page exposes the built package's createClient (no import() here: vitest rewrites it).
        // biome-ignore lint/suspicious/noExplicitAny: the page's untyped global
        const { createClient } = (window as any).piflowDemo
        const client = createClient({ baseUrl: api, apiKey: key })
        const events: { type: string; id?: string; preview?: string; result?: unknown }[] = []
        for await (const event of client.stream({ prompt: 'blue car', seed: 11, size: 32 })) {
          events.push(event)
        }
        const id = events[0]?.id
        const done = events.at(-1)?.result as {
          data: { id: string; images: { sha256: string }[] }
        }
        const again = await client.get(id)
        const models = await client.models()
        const errors = []
        for (const [c, input] of [
          [createClient({ baseUrl: api, apiKey: 'pk_wrong' }), { prompt: 'x' }],
          [client, { prompt: 'x', nfe: 3 }],
        ] as const) {
          try {
            await c.generate(input)
          } catch (e) {
            const { name, status, code, requestId, fieldErrors } = e as Record<string, unknown>
            errors.push({ name, status, code, requestId, fieldErrors })
          }
        }
        return {
          types: events.map((e) => e.type),
          previews: events.filter((e) => e.preview?.startsWith('data:image/png')).length,
          id,
          doneId: done.data.id,
          status: again.data.status,
          sameImage: again.data.images[0].sha256 === done.data.images[0]?.sha256,
          models: models.data.map((m: { id: string }) => m.id),
          errors,
        }
      },
      [stack!.workerUrl, stack!.apiKey] as const,
    )
    expect(summary.types).toEqual(streamEventTypes(4))
    expect(summary.previews).toBe(4)
    expect(summary.doneId).toBe(summary.id)
    expect(summary.status).toBe('succeeded')
    expect(summary.sameImage).toBe(true)
    expect(summary.models).toContain('piflow-emoji')
    expect(summary.errors[0]).toMatchObject({ name: 'ApiError', status: 401, code: 'unauthorized' })
    expect(summary.errors[0]?.requestId).toMatch(/^req_/)
    expect(summary.errors[1]).toMatchObject({ name: 'ValidationError', status: 422 })
    expect(summary.errors[1]?.fieldErrors).toEqual([{ path: 'nfe', message: expect.any(String) }])
    await p.close()
  })

  it('with the edge cut, falls back to WASM + CPU policy and matches the remote pixels', async () => {
    if (!stack) throw stackError // a broken stack fails the remote tests; the local ones still run
    const p = page ?? (await openDemo(true))
    const attempts: string[] = []
    await p.route(`${stack!.workerUrl}/**`, (route) => {
      attempts.push(route.request().method())
      return route.abort('connectionrefused')
    })
    wasm = await generate(p, 'wasm')
    expect(attempts.filter((m) => m === 'POST').length).toBeGreaterThan(0)
    expect(wasm.backend).toBe('wasm')
    expect(wasm.integration).toBe('cpu')
    expect(wasm.images[0]).toMatchObject({ seed: 7, width: 32, height: 32 })
    expect(await p.locator('#gallery img').count()).toBe(2)
    if (remote) {
      const d = diff(remote.images[0]!, wasm.images[0]!)
      console.log(`remote vs local WASM: max |Δ| ${d.max}, mean |Δ| ${d.mean.toFixed(4)} levels`)
      expect(d.max).toBeLessThanOrEqual(MAX_LEVEL_DIFF)
      expect(d.mean).toBeLessThanOrEqual(MAX_MEAN_DIFF)
    }
  })

  it('with the edge cut, generates via the WebGPU provider and WebGPU policy, matching too', async () => {
    const p = await openDemo(true)
    if (stack) await p.route(`${stack.workerUrl}/**`, (route) => route.abort('connectionrefused'))
    const gpu = await generate(p, 'webgpu')
    expect(gpu.backend).toBe('webgpu')
    expect(gpu.integration).toBe('webgpu')
    const reference = remote ?? wasm
    if (reference) {
      const d = diff(reference.images[0]!, gpu.images[0]!)
      console.log(
        `${reference.backend} vs local WebGPU: max |Δ| ${d.max}, mean |Δ| ${d.mean.toFixed(4)} levels`,
      )
      expect(d.max).toBeLessThanOrEqual(MAX_LEVEL_DIFF)
      expect(d.mean).toBeLessThanOrEqual(MAX_MEAN_DIFF)
    } else {
      expect(spread(gpu.images[0]!)).toBeGreaterThan(30)
    }
    await p.close()
  })

  it('serves a reload from the Cache API without downloading the model or the runtime again', async () => {
    // A fresh context (empty Cache API); without an API configured the demo generates locally only.
    const fresh = await browser.newContext()
    server.resetCounts()
    const first = await openDemo(false, fresh)
    await generate(first, 'wasm')
    // One overall progress: downloads (model + onnxruntime-web's .wasm), compile, ready.
    const stages = await loadStages(first)
    expect(stages.filter((st, i) => st !== stages[i - 1])).toEqual(['download', 'compile', 'ready'])
    expect(server.served.get('/ort/ort-wasm-simd-threaded.wasm')).toBeGreaterThan(1e6)
    await first.close()

    server.resetCounts()
    const second = await openDemo(false, fresh)
    const again = await generate(second, 'wasm', { ...INPUT, seed: 8 })
    expect(again.backend).toBe('wasm')
    expect(again.images[0]?.seed).toBe(8)
    expect(server.served.has('/models/piflow-emoji/manifest.json')).toBe(true)
    expect(server.served.has('/models/piflow-emoji/student.onnx')).toBe(false)
    expect(ortServed().filter((path) => path.endsWith('.wasm'))).toEqual([])
    expect(new Set(await loadStages(second))).toEqual(new Set(['download', 'compile', 'ready']))
    await fresh.close()
  })

  it('in auto, passes over the software (SwiftShader) WebGPU adapter and says why', async () => {
    const fresh = await browser.newContext()
    server.resetCounts()
    const p = await openDemo(false, fresh)
    const result = await generate(p, 'auto') // default providers ['webgpu', 'wasm'], integrator 'auto'
    expect(result.backend).toBe('wasm')
    expect(result.integration).toBe('cpu')
    expect(result.reason).toMatch(/software \(fallback\)/)
    // Not even the WebGPU build of onnxruntime-web is fetched.
    expect(ortServed()).toContain('/ort/ort-wasm-simd-threaded.wasm')
    expect(ortServed().filter((path) => /webgpu|jsep|asyncify|jspi/.test(path))).toEqual([])
    if (wasm) expect(diff(wasm.images[0]!, result.images[0]!).max).toBe(0)
    await fresh.close()
  })

  it("loads the model from the API's own /v1/models routes (modelBaseUrl)", async () => {
    if (!stack) throw stackError
    const fresh = await browser.newContext()
    server.resetCounts()
    const models = encodeURIComponent(`${stack.workerUrl}/v1/models/`)
    const p = await openDemo(false, fresh, `models=${models}`)
    const result = await generate(p, 'wasm')
    expect(result.backend).toBe('wasm')
    expect([...server.served.keys()].filter((path) => path.startsWith('/models/'))).toEqual([])
    const reference = remote ?? wasm
    if (reference)
      expect(diff(reference.images[0]!, result.images[0]!).max).toBeLessThanOrEqual(MAX_LEVEL_DIFF)
    await fresh.close()
  })

  it('tries WebGPU first and reports WASM + CPU policy when no adapter is available', async () => {
    const fresh = await browser.newContext() // empty Cache API: every file is fetched
    const p = await fresh.newPage()
    // As on a machine without a usable GPU: navigator.gpu exists but yields no adapter.
    await p.addInitScript(() => {
      Object.defineProperty(navigator.gpu, 'requestAdapter', { value: async () => null })
    })
    server.resetCounts()
    await p.goto(`${server.url}/demo/index.html`)
    await p.waitForFunction(() => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready)
    const result = await generate(p, 'auto') // default providers ['webgpu', 'wasm'], integrator 'auto'
    expect(result.backend).toBe('wasm')
    expect(result.integration).toBe('cpu')
    expect(result.reason).toMatch(/webgpu: no WebGPU adapter/)
    // Without a device the 2x larger WebGPU build of onnxruntime-web is never fetched.
    expect(ortServed()).toContain('/ort/ort-wasm-simd-threaded.wasm')
    expect(ortServed().filter((path) => /webgpu|jsep|asyncify|jspi/.test(path))).toEqual([])
    if (wasm) expect(diff(wasm.images[0]!, result.images[0]!).max).toBe(0)
    await fresh.close()
  })

  it('refuses a model file whose sha256 does not match the manifest', async () => {
    const fresh = await browser.newContext() // empty Cache API storage
    const p = await fresh.newPage()
    await p.route('**/models/piflow-emoji/student.onnx', async (route) => {
      const response = await route.fetch()
      const body = await response.body()
      body[body.length - 1] ^= 0xff // one flipped byte, same length
      await route.fulfill({ response, body })
    })
    await p.goto(`${server.url}/demo/index.html`)
    await p.waitForFunction(() => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready)
    const error = await generate(p, 'wasm').catch((e: Error) => e)
    expect(String(error)).toMatch(/LocalInferenceError|sha256/)
    expect(String(error)).toMatch(/does not match the manifest/)
    await fresh.close()
  })
})
