/**
 * @module webhooks
 * Webhooks of a generation (`webhook`, `webhookEvents` on POST), signed per the Standard Webhooks
 * scheme (standardwebhooks.com): headers `webhook-id` (stable per event, so a receiver deduplicates
 * retries), `webhook-timestamp` (seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
 * "<id>.<timestamp>.<body>">` under the key's webhook secret (`whsec_<base64>`, {@link webhookSecret}).
 *
 * Targets are SSRF-checked when the request is validated (422 `webhook_url_refused`) and again at each
 * delivery: https only, to a public host — no IP literal in a private, loopback, link-local, CGNAT or
 * unspecified range, no `localhost` / `.internal` / metadata name. In local mode (PIFLOW_ENV=local) a
 * loopback target is allowed, over http too, so a developer's receiver works. Redirects are never
 * followed (durable/webhook-outbox.ts). Workers resolve DNS at fetch time, so a public name that
 * resolves to a private address is not caught here; Cloudflare's own egress refuses those.
 */
import { base64, hmac } from './crypto.ts'
import type { WebhookOutbox } from './durable/webhook-outbox.ts'
import type { WEBHOOK_EVENTS } from './schemas.ts'

export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number]

/** Why a target is refused, or undefined when it may be called. */
export function refuseWebhookTarget(raw: string, local: boolean): string | undefined {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return 'must be an absolute URL'
  }
  if (url.username !== '' || url.password !== '') return 'must not carry credentials'
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '')
  const loopback = isLoopback(host)
  if (local && loopback) {
    return url.protocol === 'https:' || url.protocol === 'http:' ? undefined : 'must be http(s)'
  }
  if (url.protocol !== 'https:') {
    return local ? 'must be https (http only to a loopback host in local mode)' : 'must be https'
  }
  if (loopback || isPrivateHost(host)) {
    return 'must be a public host (private, loopback, link-local and metadata addresses are refused)'
  }
  return undefined
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost') || host === '::1') return true
  const v4 = ipv4(host)
  return v4 !== undefined && v4[0] === 127
}

function isPrivateHost(host: string): boolean {
  if (host.includes(':')) return isPrivateIpv6(host)
  const v4 = ipv4(host)
  if (!v4) {
    // metadata.google.internal, mDNS names, single-label names a local resolver answers
    return host.endsWith('.internal') || host.endsWith('.local') || !host.includes('.')
  }
  const [a, b] = v4 as [number, number, number, number]
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b < 128) || // CGNAT
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b >= 16 && b < 32) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0) ||
    (a === 198 && (b === 18 || b === 19)) ||
    a >= 224 // multicast, reserved, broadcast
  )
}

function isPrivateIpv6(host: string): boolean {
  const h = host.toLowerCase()
  return (
    h === '::' ||
    h === '::1' ||
    h.startsWith('fc') ||
    h.startsWith('fd') || // unique local
    /^fe[89ab]/.test(h) || // link-local
    h.startsWith('ff') || // multicast
    h.startsWith('::ffff:') // mapped IPv4 that ipv4() could not read: refuse rather than guess
  )
}

/** The four octets of a dotted-quad IPv4 literal (URL parsing already normalised other forms). */
function ipv4(host: string): number[] | undefined {
  const parts = host.split('.')
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p))) return undefined
  const octets = parts.map(Number)
  return octets.every((o) => o <= 255) ? octets : undefined
}

/**
 * The key's webhook secret, `whsec_<base64 of 32 bytes>`: derived (HMAC under PIFLOW_SIGNING_SECRET of
 * the key id and its stored hash), so it needs no storage, is the same on every isolate, and changes
 * when the key is replaced. `GET /v1/webhook-secret` hands it to the key's owner.
 */
export async function webhookSecret(
  signingSecret: string,
  keyId: string,
  keyHash: string,
): Promise<string> {
  const mac = await hmac(signingSecret, `piflow-webhook-secret:v1:${keyId}:${keyHash}`)
  const bytes = Uint8Array.from(atob(mac.replace(/-/g, '+').replace(/_/g, '/')), (ch) =>
    ch.charCodeAt(0),
  )
  return `whsec_${base64(bytes)}`
}

/** The Standard Webhooks headers of one delivery attempt of `body`. */
export async function signedHeaders(
  secret: string,
  id: string,
  body: string,
  now = Date.now(),
): Promise<Record<string, string>> {
  const timestamp = String(Math.floor(now / 1000))
  const key = await crypto.subtle.importKey(
    'raw',
    Uint8Array.from(atob(secret.replace(/^whsec_/, '')), (ch) => ch.charCodeAt(0)),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  const mac = await crypto.subtle.sign(
    'HMAC',
    key,
    new TextEncoder().encode(`${id}.${timestamp}.${body}`),
  )
  return {
    'webhook-id': id,
    'webhook-timestamp': timestamp,
    'webhook-signature': `v1,${base64(new Uint8Array(mac))}`,
  }
}

/** Where a generation's webhooks go: set from the request's `webhook` / `webhookEvents`. */
export interface WebhookTarget {
  url: string
  events: readonly WebhookEvent[]
  keyId: string
  keyHash: string
  outbox: DurableObjectStub<WebhookOutbox>
}

/**
 * Stores one event of generation `generationId` for delivery (if the target subscribed to it). The body
 * is `{ type: "generation.<event>", timestamp, data }`; the id is stable (`msg_<generation>_<event>[_<n>]`)
 * so a receiver deduplicates the retries of one event.
 */
export function sendWebhook(
  target: WebhookTarget,
  generationId: string,
  event: WebhookEvent,
  data: unknown,
  sequence?: number,
): Promise<void> {
  if (!target.events.includes(event)) return Promise.resolve()
  const id = `msg_${generationId}_${event}${sequence === undefined ? '' : `_${sequence}`}`
  const body = JSON.stringify({
    type: `generation.${event}`,
    timestamp: new Date().toISOString(),
    data,
  })
  return target.outbox.enqueue({
    id,
    url: target.url,
    body,
    keyId: target.keyId,
    keyHash: target.keyHash,
  })
}
