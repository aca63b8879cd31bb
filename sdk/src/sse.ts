/**
 * @module sse
 * A small Server-Sent Events parser following the WHATWG "event stream interpretation" rules: lines
 * end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next are one line
 * break), `:` lines are comments (keepalives), an empty line dispatches, multi-line `data` joins with LF.
 * Bytes are decoded with a streaming TextDecoder so a UTF-8 sequence split across chunks survives.
 */

/** One dispatched SSE message. */
export interface SseMessage {
  /** `event:` field; `message` when absent (as in EventSource). */
  event: string
  data: string
  /** Last seen `id:` field (persists across messages, as in EventSource). */
  id: string | undefined
  /** `retry:` field in ms when this message carried one. */
  retry?: number
}

/**
 * Incremental parser: feed decoded text with `push`, get complete messages back.
 * Kept separate from stream reading so it can be tested chunk by chunk.
 */
export const createSseParser = () => {
  let buffer = ''
  let data: string[] = []
  let event = ''
  let lastId: string | undefined
  let retry: number | undefined
  let sawCr = false
  let first = true

  const processLine = (line: string, out: SseMessage[]) => {
    if (line === '') {
      if (data.length > 0) {
        const message: SseMessage = { event: event || 'message', data: data.join('\n'), id: lastId }
        if (retry !== undefined) message.retry = retry
        out.push(message)
      }
      data = []
      event = ''
      retry = undefined
      return
    }
    if (line.startsWith(':')) return
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') data.push(value)
    else if (field === 'event') event = value
    else if (field === 'id' && !value.includes('\0')) lastId = value
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value)
  }

  return {
    /** Adds text and returns the messages it completed (possibly none). */
    push(text: string): SseMessage[] {
      const out: SseMessage[] = []
      if (first && text.length > 0) {
        first = false
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
      }
      // A CR ending the previous chunk already ended a line; a leading LF here belongs to it.
      if (sawCr && text.startsWith('\n')) text = text.slice(1)
      sawCr = false
      buffer += text
      let start = 0
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i)
        if (c !== 10 && c !== 13) continue
        processLine(buffer.slice(start, i), out)
        if (c === 13) {
          if (i + 1 === buffer.length) sawCr = true
          else if (buffer.charCodeAt(i + 1) === 10) i++
        }
        start = i + 1
      }
      buffer = buffer.slice(start)
      return out
    },
  }
}

/**
 * Reads an SSE body to the end, yielding each message. Cancelling the iteration (break / return)
 * cancels the body so the connection is released.
 */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const parser = createSseParser()
  const decoder = new TextDecoder()
  const reader = body.getReader()
  let done = false
  try {
    while (true) {
      const chunk = await reader.read()
      if (chunk.done) break
      yield* parser.push(decoder.decode(chunk.value, { stream: true }))
    }
    done = true
    // A stream that ends without a final blank line drops the incomplete message (as EventSource).
    parser.push(decoder.decode())
  } finally {
    if (!done) await reader.cancel().catch(() => {})
    reader.releaseLock()
  }
}
