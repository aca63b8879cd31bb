/**
 * @module allowed-methods
 * Which methods the app routes a path with, so a request with another method on a known path is a
 * 405 with `Allow` (RFC 9110 §15.5.6) rather than a 404 that says the resource does not exist.
 */

/** A route as Hono lists it in `app.routes`. */
interface Route {
  method: string
  path: string
}

const patterns = new Map<string, RegExp>()

/** A Hono route path (`/v1/generations/:id`, `*`) as a regular expression over whole paths. */
function patternOf(path: string): RegExp {
  let pattern = patterns.get(path)
  if (!pattern) {
    const source = path
      .split('/')
      .map((segment) => {
        if (segment === '*') return '.*'
        if (segment.startsWith(':')) return '[^/]+'
        return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
      })
      .join('/')
    pattern = new RegExp(`^${source}/?$`)
    patterns.set(path, pattern)
  }
  return pattern
}

/** The methods of `routes` that match `path` (middleware, registered for ALL, does not count). */
export function allowedMethods(routes: readonly Route[], path: string): string[] {
  const methods = new Set<string>()
  for (const route of routes) {
    if (route.method === 'ALL' || !patternOf(route.path).test(path)) continue
    methods.add(route.method)
    if (route.method === 'GET') methods.add('HEAD')
  }
  return [...methods]
}
