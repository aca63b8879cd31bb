/**
 * @module image
 * A generated image as a `Blob` or `File`: from its inline bytes (local results, `response:
 * 'base64'`), else downloaded from its signed URL.
 */
import { NetworkError, PiflowError } from './errors.ts'
import { apiErrorFrom } from './http.ts'
import type { GeneratedImage } from './types.ts'

/**
 * The image as a Blob of its `contentType`.
 * @example
 * img.src = URL.createObjectURL(await toBlob(result.data.images[0]))
 */
export const toBlob = async (
  image: GeneratedImage,
  options: { signal?: AbortSignal; fetch?: typeof fetch } = {},
): Promise<Blob> => {
  if (image.data) return new Blob([image.data], { type: image.contentType })
  if (!image.url) throw new PiflowError('The image has neither data nor a url')
  const response = await (options.fetch ?? fetch)(image.url, {
    signal: options.signal ?? null,
  }).catch((cause) => {
    if (options.signal?.aborted) throw options.signal.reason
    throw new NetworkError(`GET ${image.url}: ${cause.message}`, { cause })
  })
  if (!response.ok) throw apiErrorFrom(response.status, response.headers, undefined)
  return new Blob([await response.arrayBuffer()], { type: image.contentType })
}

/** The image as a File (for FormData uploads); named `piflow-<seed>.png` unless `name` is given. */
export const toFile = async (
  image: GeneratedImage,
  name = `piflow-${image.seed}.${image.contentType.split('/')[1] ?? 'png'}`,
  options?: Parameters<typeof toBlob>[1],
): Promise<File> => new File([await toBlob(image, options)], name, { type: image.contentType })
