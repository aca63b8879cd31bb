/**
 * @module body-guard
 * A request body must arrive within a deadline, and a client that hangs up mid-upload is not an
 * internal error. hono's `bodyLimit` counts the bytes; both the worker and the Node backend put this
 * guard in front of it, so a stalled upload fails with the caller's timeout error (408) and an aborted
 * one with its abort error, instead of holding the request or logging a 500 with a stack.
 */

/** The errors a guarded body fails with; each side supplies its own typed error. */
export interface BodyGuardOptions {
  timeoutMs: number
  /** The body did not arrive in full within `timeoutMs` of the first read. */
  onTimeout: () => Error
  /** The client's stream failed (hung up) before the body ended. */
  onAbort: () => Error
}

/**
 * `request` with its body replaced by one that fails with the typed errors above. The guard is lazy:
 * it touches the original body only when its own reader reads (high-water mark 0), so a request
 * refused before its body is read (413 from Content-Length, 415) leaves that body to the runtime, and
 * the deadline runs from the first read.
 */
export function guardBody(request: Request, options: BodyGuardOptions): Request {
  const body = request.body
  if (!body) return request
  // Taken at the first read: a body nobody reads stays untouched, so the runtime can still drain it.
  let source: ReadableStreamDefaultReader<Uint8Array> | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let timedOut = false
  const stopTimer = () => {
    if (timer !== undefined) clearTimeout(timer)
  }
  const guarded = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        source ??= body.getReader()
        const reader = source
        timer ??= setTimeout(() => {
          timedOut = true
          controller.error(options.onTimeout())
          reader.cancel().catch(() => undefined)
        }, options.timeoutMs)
        try {
          const { done, value } = await reader.read()
          if (timedOut) return // the stream already failed; the cancelled read's result is moot
          if (done) {
            stopTimer()
            controller.close()
          } else controller.enqueue(value)
        } catch {
          stopTimer()
          if (!timedOut) controller.error(options.onAbort())
        }
      },
      cancel(reason) {
        stopTimer()
        return source ? source.cancel(reason) : body.cancel(reason)
      },
    },
    { highWaterMark: 0 },
  )
  // `duplex` is required by Node's fetch for a streamed body and ignored by workerd.
  return new Request(request, { body: guarded, duplex: 'half' } as RequestInit)
}
