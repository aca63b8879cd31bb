/**
 * @module test/support/ndjson-fault-proxy
 * A loopback HTTP proxy in front of a real whole-generation backend (the PyTorch server) that breaks
 * its NDJSON generation streams on demand: a wrong sha256 or size on an image, the connection dropped
 * or the stream stalled after the first progress event. Everything else (model entries, cancels, and
 * generate streams in `pass` mode) goes through untouched, streamed line by line.
 */
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** What the proxy does to the next generate stream. */
export type StreamFault =
  | 'pass'
  | 'bad-sha'
  | 'wrong-size'
  | 'drop-after-progress'
  | 'stall-after-progress'

export interface NdjsonFaultProxy {
  url: string
  /** applies to generate streams that start from now on */
  mode: StreamFault
  /** generate streams seen */
  readonly stats: { streams: number }
  close(): Promise<void>
}

/** The line as `mode` corrupts it (image lines only). */
function corruptLine(line: string, mode: StreamFault): string {
  if (!line.includes('"type":"image"')) return line
  const event = JSON.parse(line) as Record<string, unknown>
  if (mode === 'bad-sha') event.sha256 = '0'.repeat(64)
  if (mode === 'wrong-size') event.width = (event.width as number) + 16
  return JSON.stringify(event)
}

/** Starts a proxy to `upstream` on a free loopback port. */
export async function startNdjsonFaultProxy(upstream: string): Promise<NdjsonFaultProxy> {
  const target = new URL(upstream)
  const stats = { streams: 0 }
  const proxy: NdjsonFaultProxy = {
    url: '',
    mode: 'pass',
    stats,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
  const server: Server = createServer((req, res) => {
    const generate = req.method === 'POST' && /\/generate$/.test(req.url ?? '')
    const mode = generate ? proxy.mode : 'pass'
    if (generate) stats.streams++
    const forward = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers)
        // An upstream that dies mid-answer (killed) drops the client's connection too, as without us.
        upstreamRes.on('close', () => {
          if (!upstreamRes.complete) res.socket?.destroy()
        })
        if (mode === 'pass') {
          upstreamRes.pipe(res)
          return
        }
        let pending = ''
        let stalled = false
        upstreamRes.setEncoding('utf8')
        upstreamRes.on('data', (chunk: string) => {
          if (stalled) return
          pending += chunk
          const lines = pending.split('\n')
          pending = lines.pop()!
          for (const line of lines) {
            res.write(`${corruptLine(line, mode)}\n`)
            if (line.includes('"type":"progress"')) {
              if (mode === 'drop-after-progress') {
                res.socket?.destroy()
                forward.destroy()
                return
              }
              if (mode === 'stall-after-progress') {
                // Keeps the connection open and silent until the client gives up.
                stalled = true
                return
              }
            }
          }
        })
        upstreamRes.on('end', () => {
          if (!stalled) res.end(pending)
        })
      },
    )
    forward.on('error', () => res.socket?.destroy())
    // The client gone (the worker's idle timeout, an abort): so is the upstream request, which cancels.
    res.on('close', () => forward.destroy())
    req.pipe(forward)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return proxy
}
