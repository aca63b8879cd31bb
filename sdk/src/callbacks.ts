/**
 * @module callbacks
 * A stream's callbacks (`onEvent`, `onProgress`, `onImage`) driven by its events; shared by the remote
 * streaming chunk and the local generator, and apart from events.ts so the root entry does not carry it.
 */
import type { StreamCallbacks, StreamEvent } from './types.ts'

/** Calls the matching callbacks of `callbacks` for `event`, and returns it. */
export const emitter =
  (callbacks: StreamCallbacks) =>
  (event: StreamEvent): StreamEvent => {
    callbacks.onEvent?.(event)
    if (event.type === 'progress') callbacks.onProgress?.(event)
    if (event.type === 'image') callbacks.onImage?.(event.image)
    return event
  }
