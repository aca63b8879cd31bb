/**
 * @module test/webgpu/chromium
 * Runs the WebGPU conformance cases inside real headless Chromium: esbuild bundles browser-entry.ts
 * (the twin + the shared case parser and checks), a local node:http server serves it with the raw
 * golden files, playwright-core drives system Chromium (test/support/chromium.ts) with WebGPU on
 * (SwiftShader adapter on machines without a GPU; notes/toolchain.md). Browser and server are always
 * closed.
 */
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Plugin } from 'esbuild'
import { browserUnavailable, launchChromium } from '../support/chromium.ts'
import type { RuntimeReport } from './report.ts'

const HERE = path.dirname(fileURLToPath(import.meta.url))

/**
 * test/conformance/cases.ts imports node:fs/path/url for its directory loader; the browser only uses
 * its parser. These stand-ins satisfy the module's top-level path arithmetic and nothing else.
 */
const nodeShims: Plugin = {
  name: 'node-shims',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: 'node-shim' }))
    b.onLoad({ filter: /.*/, namespace: 'node-shim' }, () => ({
      loader: 'js',
      contents: `
        const unavailable = () => { throw new Error('not available in the browser') }
        const dirname = (p) => String(p).slice(0, Math.max(String(p).lastIndexOf('/'), 0))
        const basename = (p, ext) => { const b = String(p).slice(String(p).lastIndexOf('/') + 1);
          return ext && b.endsWith(ext) ? b.slice(0, -ext.length) : b }
        const resolve = (...parts) => parts.join('/')
        const join = resolve
        export const fileURLToPath = (u) => String(u)
        export const existsSync = () => false
        export const readFileSync = unavailable
        export const readdirSync = unavailable
        export default { dirname, basename, resolve, join }
      `,
    }))
  },
}

/** Bundles the browser entry (in memory). */
async function bundle(): Promise<string> {
  const result = await build({
    entryPoints: [path.join(HERE, 'browser-entry.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    plugins: [nodeShims],
  })
  return result.outputFiles[0].text
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>piflow webgpu conformance</title>
<script type="module" src="/bundle.js"></script>`

function serve(script: string, dir: string, files: readonly string[]): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE)
    } else if (url.pathname === '/bundle.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(script)
    } else if (url.pathname.startsWith('/golden/') && files.includes(url.pathname.slice(8))) {
      // only the listed case files: no path from the URL ever reaches the file system
      const text = readFileSync(path.join(dir, url.pathname.slice(8)), 'utf8')
      res.writeHead(200, { 'content-type': 'application/json' }).end(text)
    } else {
      res.writeHead(404).end()
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

/**
 * Runs the case files `files` (names inside `dir`) in headless Chromium. A missing browser or a null
 * adapter is reported as a skip with its reason, never as a failure.
 */
export async function runInChromium(dir: string, files: readonly string[]): Promise<RuntimeReport> {
  const unavailable = browserUnavailable()
  if (unavailable) return { runtime: 'chromium', adapter: null, skipped: unavailable, results: [] }
  const script = await bundle()
  const server = await serve(script, dir, files)
  const browser = await launchChromium({ webgpu: true })
  try {
    const page = await browser.newPage()
    const logs: string[] = []
    page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`))
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`))
    const { port } = server.address() as { port: number }
    await page.goto(`http://127.0.0.1:${port}/`)
    await page.waitForFunction(() => 'piflowConformance' in globalThis, undefined, {
      timeout: 30_000,
    })
    const report = await page.evaluate(
      (list) =>
        (
          globalThis as unknown as { piflowConformance: (f: string[]) => Promise<RuntimeReport> }
        ).piflowConformance(list),
      [...files],
    )
    if (logs.length > 0) report.logs = logs
    return report
  } finally {
    await browser.close()
    await new Promise((resolve) => server.close(resolve))
  }
}
