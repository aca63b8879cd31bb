/**
 * @module routes/images
 * `GET /v1/images/:name?exp=&sig=`: generated PNGs by signed URL (see images.ts). No Authorization
 * needed (an `<img src>` cannot send one); cross-origin embeddable; cacheable until the URL expires.
 */
import { Hono } from 'hono'
import { ApiError, NotFoundError } from '../errors.ts'
import type { AppEnv } from '../hono-env.ts'
import { verifyImageUrl } from '../images.ts'

export const images = new Hono<AppEnv>()

images.get('/:name', async (c) => {
  const name = c.req.param('name')
  const exp = c.req.query('exp')
  const check = await verifyImageUrl(name, exp, c.req.query('sig'), c.var.settings.signingSecret)
  if (check === 'bad_name') throw new NotFoundError('No such image', 'image_not_found')
  if (check === 'expired')
    throw new ApiError(403, 'image_url_expired', 'This image URL has expired')
  if (check === 'bad_signature') {
    throw new ApiError(403, 'image_url_invalid', 'This image URL is not validly signed')
  }
  const etag = `"${name.slice(0, 64)}"`
  const headers: Record<string, string> = {
    ETag: etag,
    'Cache-Control': `private, max-age=${Math.max(0, Number(exp) - Math.floor(Date.now() / 1000))}, immutable`,
    'Cross-Origin-Resource-Policy': 'cross-origin',
    'Access-Control-Allow-Origin': '*',
  }
  if (c.req.header('If-None-Match') === etag) return c.body(null, 304, headers)
  const object = await c.env.IMAGES.get(`images/${name}`)
  if (!object) throw new NotFoundError('No such image', 'image_not_found')
  headers['Content-Type'] = 'image/png'
  headers['Content-Length'] = String(object.size)
  return new Response(object.body, { headers })
})
