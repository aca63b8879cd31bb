/**
 * @module test/reliability/support/fault-proxy
 * A small HTTP proxy (node:http, loopback only) that sits between the worker and one real backend and
 * injects faults on demand: refused/reset connections, stalls past the worker's timeout, 5xx, corrupt
 * or reshaped safetensors, NaN/Inf tensors, and connections dropped halfway through a response.
 * Faults hit only `POST /v1/models/*` (student forwards and steps); `/readyz` passes through unless the
 * proxy is `down`, so circuit-breaker probes see the truth.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { decodeSafetensors, encodeSafetensors, type SafetensorsTensor } from '@piflow/protocol'

/** What the proxy does to model requests. */
export type FaultMode =
  | 'pass'
  | 'down'
  | 'slow'
  | 'status-500'
  | 'overloaded'
  | 'malformed'
  | 'wrong-shape'
  | 'nan'
  | 'inf'
  | 'drop-mid'

/** A running proxy. */
export interface FaultProxy {
  url: string
  /** where requests go (a backend URL); may be changed, e.g. after restarting the backend */
  upstream: string
  mode: FaultMode
  /** `slow`: how long to stall before forwarding */
  slowMs: number
  /** apply `mode` only to the next N model requests, then pass (undefined = every request) */
  faultBudget: number | undefined
  /** model requests seen, and how many had a fault applied */
  /** `probes`: the other requests (health and readiness checks) */
  readonly stats: { modelRequests: number; faulted: number; probes: number }
  /** called for every model request (e.g. to kill the backend after the first forward) */
  onModelRequest: ((count: number) => void) | undefined
  close(): Promise<void>
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => resolve(Buffer.concat(chunks)))
    stream.on('error', reject)
  })
}

/** Rewrites every F32 tensor of a safetensors body with `edit`. */
function rewriteTensors(
  body: Buffer,
  edit: (tensor: SafetensorsTensor & { dtype: 'F32' }) => SafetensorsTensor,
): Uint8Array {
  const file = decodeSafetensors(new Uint8Array(body))
  const out: Record<string, SafetensorsTensor> = {}
  for (const [name, tensor] of Object.entries(file.tensors)) {
    out[name] =
      tensor.dtype === 'F32' ? edit(tensor as SafetensorsTensor & { dtype: 'F32' }) : tensor
  }
  return encodeSafetensors(out, file.metadata)
}

const corrupt: Partial<Record<FaultMode, (body: Buffer) => Uint8Array>> = {
  // A plausible header length followed by bytes that are not a JSON header.
  malformed: (body) => {
    const bytes = new Uint8Array(Math.max(64, Math.min(body.length, 4096)))
    new DataView(bytes.buffer).setBigUint64(0, 40n, true)
    bytes.fill(0x7b, 8) // '{{{{…'
    return bytes
  },
  // Every tensor loses its last spatial row: consistent safetensors, wrong shapes.
  'wrong-shape': (body) =>
    rewriteTensors(body, (t) => {
      const shape = [...t.shape]
      if (shape.length >= 2) shape[shape.length - 2] = Math.max(1, shape[shape.length - 2]! - 1)
      const size = shape.reduce((a, b) => a * b, 1)
      return { dtype: 'F32', shape, data: t.data.slice(0, size) }
    }),
  // NaN deep inside the large tensors only (one-element tensors such as logstds stay finite).
  nan: (body) =>
    rewriteTensors(body, (t) => {
      const data = t.data.slice()
      for (let i = 1; i < data.length; i += 97) data[i] = Number.NaN
      return { ...t, data }
    }),
  inf: (body) =>
    rewriteTensors(body, (t) => {
      const data = t.data.slice()
      for (let i = 0; i < data.length; i += 89) data[i] = i % 2 ? -Infinity : Infinity
      return { ...t, data }
    }),
}

/** Starts a fault proxy in front of `upstream` on 127.0.0.1 (random port). */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const sockets = new Set<import('node:net').Socket>()
  const state: FaultProxy = {
    url: '',
    upstream,
    mode: 'pass',
    slowMs: 0,
    faultBudget: undefined,
    stats: { modelRequests: 0, faulted: 0, probes: 0 },
    onModelRequest: undefined,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  const server: Server = createServer(async (req, res) => {
    const isModel = req.method === 'POST' && (req.url ?? '').startsWith('/v1/models/')
    let mode: FaultMode = state.mode
    if (isModel) {
      state.stats.modelRequests++
      state.onModelRequest?.(state.stats.modelRequests)
      if (state.faultBudget !== undefined) {
        if (state.faultBudget > 0) state.faultBudget--
        else mode = 'pass'
      }
      if (mode !== 'pass') state.stats.faulted++
    } else {
      state.stats.probes++
    }
    if (!isModel && mode !== 'down') {
      mode = 'pass'
    }
    const body = await readAll(req).catch(() => undefined)
    if (body === undefined) return
    if (mode === 'down') {
      req.socket.destroy()
      return
    }
    if (mode === 'overloaded') {
      res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '2' })
      res.end('{"error":{"code":"queue_full","message":"injected"}}')
      return
    }
    if (mode === 'status-500') {
      res.writeHead(500, { 'Content-Type': 'application/json' })
      res.end('{"error":{"code":"inference_failed","message":"injected"}}')
      return
    }
    if (mode === 'slow') await new Promise((r) => setTimeout(r, state.slowMs))
    if (res.destroyed) return
    const target = new URL(req.url ?? '/', state.upstream)
    const upstreamReq = httpRequest(target, {
      method: req.method,
      headers: { ...req.headers, host: target.host },
    })
    upstreamReq.on('error', () => req.socket.destroy())
    upstreamReq.on('response', async (upstreamRes) => {
      const answer = await readAll(upstreamRes).catch(() => undefined)
      if (answer === undefined) {
        req.socket.destroy()
        return
      }
      let out: Uint8Array = answer
      const transform = corrupt[mode]
      if (transform && upstreamRes.statusCode === 200) out = transform(answer)
      const headers = { ...upstreamRes.headers, 'content-length': String(out.byteLength) }
      delete headers['transfer-encoding']
      res.writeHead(upstreamRes.statusCode ?? 502, headers)
      if (mode === 'drop-mid' && upstreamRes.statusCode === 200) {
        // Half the promised bytes, then a reset: the client must notice the short body.
        res.write(out.subarray(0, out.byteLength >> 1), () => req.socket.destroy())
        return
      }
      res.end(out)
    })
    upstreamReq.end(body)
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return state
}
