/**
 * @module render
 * Stored records → public JSON. Image URLs are signed here, at read time.
 */
import { base64 } from './crypto.ts'
import { signImageUrl } from './images.ts'
import type { GenerationRecord, StoredImage } from './records.ts'
import type { Generation } from './schemas.ts'

export interface RenderOptions {
  origin: string
  signingSecret: string
  bucket: R2Bucket
  /** inline base64 PNG bytes (request `response: "base64"`) */
  inline: boolean
}

type PublicImage = Generation['images'][number]

/** One image as the API shows it; `png` avoids an R2 read when the bytes are at hand. */
export async function renderImage(
  image: StoredImage,
  options: RenderOptions,
  png?: Uint8Array,
): Promise<PublicImage> {
  const out: PublicImage = {
    index: image.index,
    seed: image.seed,
    url: await signImageUrl(options.origin, image.sha256, options.signingSecret),
    width: image.width,
    height: image.height,
    contentType: 'image/png',
    sha256: image.sha256,
    bytes: image.bytes,
  }
  if (options.inline) {
    const bytes = png ?? new Uint8Array(await (await options.bucket.get(image.key))!.arrayBuffer())
    out.data = base64(bytes)
  }
  return out
}

/** The public `Generation` for a stored record; `pngs` (by image index) spares inline images an R2 read. */
export async function renderGeneration(
  record: GenerationRecord,
  options: RenderOptions,
  pngs?: ReadonlyMap<number, Uint8Array>,
): Promise<Generation> {
  const { request } = record
  return {
    id: record.id,
    object: 'generation',
    status: record.status,
    model: request.model,
    prompt: request.prompt,
    nfe: request.nfe,
    seed: request.seed,
    size: request.size,
    guidance: request.guidance,
    count: request.count,
    cached: record.cached,
    ...(record.status === 'queued' && record.queuePosition !== undefined
      ? { queuePosition: record.queuePosition }
      : {}),
    progress: record.progress,
    images: await Promise.all(
      record.images.map((image) => renderImage(image, options, pngs?.get(image.index))),
    ),
    path: 'remote',
    integration: record.integration,
    backends: record.backends,
    timings: record.timings,
    createdAt: record.createdAt,
    completedAt: record.completedAt,
    error: record.error && { code: record.error.code, message: record.error.message },
    requestId: record.requestId,
  }
}
