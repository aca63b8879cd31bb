/**
 * @module routes/models
 * `GET /v1/models`, `GET /v1/models/:id` (manifest + download URLs) and
 * `GET /v1/models/:id/files/:key` (every file of the manifest: ONNX, tokenizer, and the `notice` whose
 * licence attribution travels with the weights, e.g. Twemoji's CC-BY 4.0). All public: they are published, static,
 * immutable artifacts, and the browser SDK (`@piflow/sdk/local`) fetches them without an API key.
 * Files come from the static-asset CDN (`[assets]` in wrangler.toml); the manifest's sha256 is the
 * ETag and they are cached for a year.
 */

import type { ManifestFile } from '@piflow/models'
import type { Context } from 'hono'
import { Hono } from 'hono'
import { BackendError, NotFoundError } from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'
import { getModel, type ServedModel, servedModel } from '../models.ts'
import { publicOrigin } from '../origin.ts'

export const models = new Hono<AppEnv>()

/**
 * By role, not by name: a `notice` (licence and attribution text, e.g. `NOTICE` with no extension)
 * must open as readable text in a browser, the tokenizer is JSON, ONNX weights are opaque bytes.
 */
function contentTypeOf(file: ManifestFile): string {
  if (file.role === 'notice') return 'text/plain; charset=utf-8'
  if (file.role === 'tokenizer' || file.path.endsWith('.json')) return 'application/json'
  return 'application/octet-stream'
}

/**
 * A model's public entry. A model generated whole on its backend has no files to download: its
 * `manifest` is the backend's `/v1/models` entry (capabilities `generate`, sizes, NFE, guidance).
 */
function describe(c: Context<AppEnv>, model: ServedModel) {
  if (model.kind === 'remote') {
    return { id: model.id, object: 'model' as const, manifest: model.entry, files: [] }
  }
  const origin = publicOrigin(c)
  return {
    id: model.id,
    object: 'model' as const,
    manifest: model.manifest as unknown as Record<string, unknown>,
    files: Object.entries(model.manifest.files).map(([key, file]) => ({
      key,
      role: file.role,
      sha256: file.sha256,
      bytes: file.bytes,
      url: `${origin}/v1/models/${encodeURIComponent(model.id)}/files/${encodeURIComponent(key)}`,
    })),
  }
}

models.get('/', async (c) => {
  // A model whose backend cannot be reached right now is left out of the list, not the whole list.
  const loaded = await Promise.all(
    c.var.settings.models.map((id) =>
      servedModel(c.env, c.var.settings, id).catch((error) => {
        if (!(error instanceof BackendError)) throw error
        console.error(`listing model ${id} failed`, error)
        return undefined
      }),
    ),
  )
  const listed = loaded.filter((m) => m !== undefined)
  c.header('Cache-Control', 'public, max-age=60')
  return c.json({ object: 'list' as const, data: listed.map((m) => describe(c, m)) })
})

models.get('/:id', async (c) => {
  const model = await servedModel(c.env, c.var.settings, c.req.param('id'))
  c.header('Cache-Control', 'public, max-age=60')
  return c.json(describe(c, model))
})

models.get('/:id/files/:key', async (c) => {
  const model = await getModel(c.env, c.var.settings.models, c.req.param('id'))
  const key = c.req.param('key')
  const file = Object.hasOwn(model.manifest.files, key) ? model.manifest.files[key] : undefined
  if (!file)
    throw new NotFoundError(`Model ${model.id} has no file "${key}"`, 'model_file_not_found')
  const etag = `"${file.sha256}"`
  const headers: Record<string, string> = {
    ETag: etag,
    'Cache-Control': 'public, max-age=31536000, immutable',
    'Access-Control-Allow-Origin': '*',
    'Cross-Origin-Resource-Policy': 'cross-origin',
  }
  if (c.req.header('If-None-Match') === etag) return c.body(null, 304, headers)
  const asset = await c.env.ASSETS.fetch(
    new Request(`https://assets.invalid/${model.id}/${file.path}`),
  )
  if (!asset.ok) {
    await asset.body?.cancel()
    throw new NotFoundError(`File ${key} of ${model.id} is not deployed`, 'model_file_not_found')
  }
  headers['Content-Type'] = contentTypeOf(file)
  headers['Content-Length'] = String(file.bytes)
  return new Response(asset.body, { headers })
})
