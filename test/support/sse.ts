/**
 * @module sse
 * Server-sent events helpers shared by the worker, SDK, end-to-end and reliability suites. Plain
 * web-standard TypeScript (no `node:` imports): the worker suite imports it inside workerd.
 */

/** One parsed SSE event. */
export interface SseEvent {
  event: string
  data: string
  id?: string
}

/**
 * Incremental SSE parser over a fetch body: yields events as they arrive (not after the stream ends)
 * and counts `:` comment lines (keepalives) into `stats` when given.
 */
export async function* sseEvents(
  body: ReadableStream<Uint8Array>,
  stats?: { comments: number },
): AsyncGenerator<SseEvent> {
  // lib.dom's TextDecoderStream typing does not line up with Node's ReadableStream generics.
  const decoder = new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>
  const reader = body.pipeThrough(decoder).getReader()
  let buffer = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return
    buffer += value
    let end = buffer.indexOf('\n\n')
    while (end >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      end = buffer.indexOf('\n\n')
      const event: SseEvent = { event: 'message', data: '' }
      const data: string[] = []
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          if (stats) stats.comments++
          continue
        }
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === 'event') event.event = text
        else if (field === 'data') data.push(text)
        else if (field === 'id') event.id = text
      }
      if (data.length > 0) yield { ...event, data: data.join('\n') }
    }
  }
}

/**
 * The event types a successful generation stream carries, in order: `id`, one `progress` per NFE, one
 * `image` per image, `done`.
 */
export function streamEventTypes(nfe: number, images = 1): string[] {
  return ['id', ...Array(nfe).fill('progress'), ...Array(images).fill('image'), 'done']
}
