/**
 * Reading a tensor request's body. `Request.arrayBuffer()` keeps every chunk and then a joined copy of
 * the whole body, garbage or not, so N concurrent 32 MiB junk uploads hold 2 × N × 32 MiB until they
 * end; this reader checks the first 8 bytes (the safetensors header length, the codec's own rule) as
 * soon as they arrive and, when they cannot be valid, drains the rest without keeping it, so the client
 * still gets its 400 on a usable connection. Nothing is allocated from Content-Length up front: a
 * zeroed 24 MiB buffer comes from glibc's heap once its mmap threshold has grown and stays resident
 * (measured, bad-input suite: backend RSS growth 50–81 MiB with it; 30–48 MiB without it or with
 * arrayBuffer(), where what remains is the socket's chunks awaiting GC).
 */
import { checkBodyPrefix } from './protocol.ts'

/** The whole body, or the 400 (`malformed_safetensors`) its first 8 bytes already decide. */
export async function readTensorBody(request: Request): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0)
  const total = declaredLength(request)
  const sink = new ChunkSink()
  const reader = request.body.getReader()
  let refusal: unknown
  for (let result = await reader.read(); !result.done; result = await reader.read()) {
    if (refusal !== undefined) continue // drained, not kept
    const before = sink.received
    sink.push(result.value)
    if (before < 8 && sink.received >= 8) {
      try {
        checkBodyPrefix(sink.prefix(), total ?? Number.POSITIVE_INFINITY)
      } catch (error) {
        refusal = error
        sink.drop()
      }
    }
  }
  if (refusal !== undefined) throw refusal
  return sink.bytes()
}

/** Content-Length as a byte count, when the client sent a valid one. */
function declaredLength(request: Request): number | undefined {
  const header = request.headers.get('content-length')
  if (header === null || !/^\d+$/.test(header)) return undefined
  const length = Number(header)
  return Number.isSafeInteger(length) ? length : undefined
}

/** Collects a body's chunks; joined once at the end. */
class ChunkSink {
  private chunks: Uint8Array[] = []
  received = 0
  push(chunk: Uint8Array): void {
    this.chunks.push(chunk)
    this.received += chunk.byteLength
  }
  prefix(): Uint8Array {
    return joinChunks(this.chunks, 8)
  }
  drop(): void {
    this.chunks = []
  }
  bytes(): Uint8Array {
    return joinChunks(this.chunks, this.received)
  }
}

function joinChunks(chunks: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) {
    if (offset >= length) break
    const part = chunk.subarray(0, length - offset)
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}
