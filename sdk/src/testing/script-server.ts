/**
 * @module testing/script-server
 * A real node:http server whose behaviour each test scripts, used by the SDK's unit tests (ky's
 * `create-http-test-server` pattern): the client under test talks real HTTP over a real socket.
 */
import { createReadStream, existsSync, statSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, normalize, sep } from 'node:path'
import { afterEach } from 'vitest'
import { type ClientOptions, createClient } from '../client.ts'

/** A request as the server saw it. */
export interface SeenRequest {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: string
}

export type ScriptHandler = (
  req: SeenRequest,
  res: ServerResponse,
  attempt: number,
) => void | Promise<void>

export interface ScriptServer {
  url: string
  /** Every request received, in order. */
  requests: SeenRequest[]
  close(): Promise<void>
}

/** Starts a server on 127.0.0.1 with a free port; `handler` answers each request. */
export const startScriptServer = async (handler: ScriptHandler): Promise<ScriptServer> => {
  const requests: SeenRequest[] = []
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const seen: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    }
    requests.push(seen)
    try {
      await handler(seen, res, requests.length)
    } catch (error) {
      res.destroy(error as Error)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/**
 * `serve(handler)` for a test file: each server it starts is closed after its test (a test may close
 * it earlier; closing twice is harmless).
 */
export const serverPerTest = () => {
  const open: ScriptServer[] = []
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()))
  })
  return async (handler: ScriptHandler) => {
    const server = await startScriptServer(handler)
    open.push(server)
    return server
  }
}

/** A client of `server` with a test key and fast retries: no time in backoff unless a test asks. */
export const testClient = (server: ScriptServer, extra: Partial<ClientOptions> = {}) =>
  createClient({
    baseUrl: server.url,
    apiKey: 'pk_test',
    retry: { delay: 1, maxDelay: 5 },
    ...extra,
  })

/** Sends a JSON response. */
export const sendJson = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

/** The repository's models/ directory (manifests, ONNX files, tokenizers). */
export const MODELS_DIR = join(import.meta.dirname, '../../../models')

/**
 * Answers `GET /models/<path>` from {@link MODELS_DIR} (as a CDN would serve model files) and returns
 * true, or false for any other URL so the caller can script the rest.
 */
export const serveModelFile = (req: SeenRequest, res: ServerResponse): boolean => {
  if (req.method !== 'GET' || !req.url.startsWith('/models/')) return false
  const file = normalize(join(MODELS_DIR, decodeURIComponent(req.url.slice('/models/'.length))))
  if (!file.startsWith(MODELS_DIR + sep) || !existsSync(file)) {
    res.writeHead(404).end()
    return true
  }
  res.writeHead(200, { 'content-length': String(statSync(file).size) })
  createReadStream(file).pipe(res)
  return true
}
