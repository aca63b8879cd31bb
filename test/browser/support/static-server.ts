/**
 * @module test/browser/support/static-server
 * Serves the SDK demo page to a real browser: the built SDK (sdk/dist), ky, onnxruntime-web's files
 * (self-hosted, as `wasmPaths` documents) and the model directories, from one local origin. Counts
 * bytes per path so tests and benchmarks can tell a cold download from a cache hit. Extra model
 * directories (a model outside `models/`, e.g. `BENCH_MODEL_DIR`) mount as `/models/<id>/`; with
 * `crossOriginIsolated` every response carries COOP/COEP, so pages may run onnxruntime-web's threads.
 */
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { dirname, extname, join, normalize, sep } from 'node:path'

const root = join(import.meta.dirname, '../../..')
// The ky the SDK depends on (npm may nest it under sdk/node_modules when versions differ).
const kyDir = dirname(createRequire(join(root, 'sdk/package.json')).resolve('ky'))

/** URL prefix → directory on disk. */
const MOUNTS: Record<string, string> = {
  '/demo/': join(root, 'sdk/demo'),
  '/sdk/': join(root, 'sdk/dist'),
  '/vendor/ky/': kyDir,
  '/ort/': join(root, 'node_modules/onnxruntime-web/dist'),
  '/models/': join(root, 'models'),
  '/bench/': join(root, 'bench'),
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.map': 'application/json',
}

export interface StaticServerOptions {
  /** model id → directory, served as `/models/<id>/` (before the repository's own `models/`) */
  modelDirs?: Record<string, string>
  /**
   * Send `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`,
   * what a page needs to be `crossOriginIsolated` (SharedArrayBuffer, so WASM threads).
   */
  crossOriginIsolated?: boolean
}

export interface StaticServer {
  url: string
  /** bytes served per request path since start (or the last reset) */
  served: Map<string, number>
  resetCounts(): void
  close(): Promise<void>
}

/** Starts the server on 127.0.0.1 with a free port. `/` redirects to the demo page. */
export const startStaticServer = async (
  options: StaticServerOptions = {},
): Promise<StaticServer> => {
  const served = new Map<string, number>()
  const mounts: Record<string, string> = {}
  for (const [id, dir] of Object.entries(options.modelDirs ?? {})) mounts[`/models/${id}/`] = dir
  Object.assign(mounts, MOUNTS)
  const isolation: Record<string, string> = options.crossOriginIsolated
    ? {
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
      }
    : {}
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    if (path === '/') {
      res.writeHead(302, { location: '/demo/index.html' })
      return res.end()
    }
    // Insertion order: the extra model directories are tried before `/models/`.
    const prefix = Object.keys(mounts).find((p) => path.startsWith(p))
    const dir = prefix && mounts[prefix]
    const file = dir && normalize(join(dir, path.slice(prefix.length)))
    let size = -1
    try {
      const stat = file?.startsWith(dir + sep) ? statSync(file) : undefined
      if (stat?.isFile()) size = stat.size
    } catch {
      // missing file: 404 below
    }
    if (!file || size < 0) {
      res.writeHead(404, { 'content-type': 'text/plain' })
      return res.end('not found')
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': String(size),
      'cache-control': 'no-store',
      ...isolation,
    })
    served.set(path, (served.get(path) ?? 0) + size)
    createReadStream(file).pipe(res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    served,
    resetCounts: () => served.clear(),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
