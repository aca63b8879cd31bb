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
  /** The body did not arrive in full within `timeoutMs`. */
  onTimeout: () => Error
  /** The client's stream failed (hung up) before the body ended. */
  onAbort: () => Error
}

/** `request` with its body replaced by one that fails with the typed errors above. */
export function guardBody(request: Request, options: BodyGuardOptions): Request {
  if (!request.body) return request
  const source = request.body.getReader()
  let timer: ReturnType<typeof setTimeout> | undefined
  const stopTimer = () => {
    if (timer !== undefined) clearTimeout(timer)
  }
  const guarded = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setTimeout(() => {
        controller.error(options.onTimeout())
        source.cancel().catch(() => undefined)
      }, options.timeoutMs)
    },
    async pull(controller) {
      try {
        const { done, value } = await source.read()
        if (done) {
          stopTimer()
          controller.close()
        } else controller.enqueue(value)
      } catch {
        stopTimer()
        controller.error(options.onAbort())
      }
    },
    cancel(reason) {
      stopTimer()
      return source.cancel(reason)
    },
  })
  // `duplex` is required by Node's fetch for a streamed body and ignored by workerd.
  return new Request(request, { body: guarded, duplex: 'half' } as RequestInit)
}
