/**
 * @module openapi
 * The OpenAPI 3.1 document, with every schema rendered from the zod objects in schemas.ts that the
 * handlers validate with (z.toJSONSchema), so the document and the enforcement cannot disagree.
 */
import { z } from 'zod'
import { apiSchemas, MAX_BODY_BYTES } from './schemas.ts'

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` })
const json = (id: string) => ({ 'application/json': { schema: ref(id) } })
const error = (description: string) => ({ description, content: json('Error') })

const rateLimitHeaders = {
  RateLimit: {
    schema: { type: 'string' },
    description: '"images";r=<remaining>;t=<seconds to reset>',
  },
  'RateLimit-Policy': {
    schema: { type: 'string' },
    description: '"images";q=<quota>;w=<window seconds>',
  },
}

let cached: object | undefined

/** The OpenAPI document (built once per isolate). */
export function openApiDocument(): object {
  if (cached) return cached
  const rendered = z.toJSONSchema(apiSchemas, {
    uri: (id) => `#/components/schemas/${id}`,
    io: 'input',
    unrepresentable: 'any',
  }) as { schemas: Record<string, Record<string, unknown>> }
  const schemas: Record<string, unknown> = {}
  for (const [id, schema] of Object.entries(rendered.schemas)) {
    const { $schema: _s, $id: _i, ...rest } = schema
    schemas[id] = rest
  }
  const bearer = [{ bearer: [] }]
  cached = {
    openapi: '3.1.0',
    info: {
      title: 'piflow',
      version: '1.0.0',
      description:
        'Few-step image generation with π-Flow students. Errors are `{ error: { code, message }, requestId }`.',
    },
    components: {
      schemas,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'pf_<id>_<secret> (API key) or pft_… (client token, POST /v1/tokens)',
        },
      },
    },
    paths: {
      '/v1/generations': {
        post: {
          operationId: 'createGeneration',
          summary: 'Generate images (JSON, or Server-Sent Events with Accept: text/event-stream)',
          security: bearer,
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              schema: { type: 'string', maxLength: 255 },
              description:
                'Same key + same body replays the stored result; while the first is running → 409; different body → 422.',
            },
            {
              name: 'Prefer',
              in: 'header',
              required: false,
              schema: { type: 'string' },
              description:
                '`respond-async`: answer 202 with the id and URLs as soon as the generation is stored; it runs on (follow it with GET, or its event stream).',
            },
          ],
          requestBody: { required: true, content: json('GenerationRequest') },
          responses: {
            200: {
              description: `The finished generation (JSON), or an SSE stream of events id, queued ({id, status, queuePosition}, while waiting for a backend slot, re-sent when the position changes), progress (one per NFE, optional preview data URI), image, done (or error, or canceled {id, status}), with keepalive comments. Body limit ${MAX_BODY_BYTES} bytes.`,
              headers: rateLimitHeaders,
              content: {
                ...json('Generation'),
                'text/event-stream': { schema: { type: 'string' } },
              },
            },
            202: {
              description:
                'Prefer: respond-async — accepted; Location is the generation, Preference-Applied: respond-async',
              headers: {
                Location: { schema: { type: 'string' } },
                'Preference-Applied': { schema: { type: 'string' } },
              },
              content: json('AcceptedGeneration'),
            },
            400: error('Malformed JSON or header'),
            401: error('Missing or unknown API key'),
            403: error('Key lacks the generations:write scope'),
            408: error('Body not received within 10 s'),
            409: {
              ...error('Idempotency-Key in progress'),
              headers: { 'Retry-After': { schema: { type: 'integer' } } },
            },
            413: error('Body too large'),
            415: error('Body is not application/json in UTF-8'),
            422: error(
              'Invalid values (error.fields lists them), webhook_url_refused (a private, loopback or non-https webhook), or Idempotency-Key reused with another body',
            ),
            429: {
              ...error('Quota exhausted'),
              headers: { ...rateLimitHeaders, 'Retry-After': { schema: { type: 'integer' } } },
            },
            502: error('Backend failed'),
            503: {
              ...error(
                'No backend available, or queue_full: every backend slot is taken and PIFLOW_QUEUE_LIMIT generations wait',
              ),
              headers: { 'Retry-After': { schema: { type: 'integer' } } },
            },
            504: error('Backend timed out'),
          },
        },
      },
      '/v1/generations/{id}': {
        get: {
          operationId: 'getGeneration',
          summary:
            'Status or result of an earlier generation (survives dropped streams); with Accept: text/event-stream, its events after Last-Event-ID, then live until done or error',
          security: bearer,
          parameters: [
            { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
            {
              name: 'Last-Event-ID',
              in: 'header',
              required: false,
              schema: { type: 'string' },
              description: 'SSE only: resume after this event id (0 … nfe+count+1).',
            },
            {
              name: 'lastEventId',
              in: 'query',
              required: false,
              schema: { type: 'string' },
              description: 'Same as Last-Event-ID, for clients that cannot set headers.',
            },
          ],
          responses: {
            200: {
              description: 'The generation (JSON) or its event stream (SSE)',
              content: {
                ...json('Generation'),
                'text/event-stream': { schema: { type: 'string' } },
              },
            },
            204: { description: 'SSE: Last-Event-ID was the final event; nothing follows' },
            400: error('Last-Event-ID is not an event id of this generation, or a malformed key'),
            401: error('Missing or unknown API key'),
            403: error('Key lacks the generations:read scope'),
            404: error('Unknown id'),
          },
        },
      },
      '/v1/generations/{id}/cancel': {
        post: {
          operationId: 'cancelGeneration',
          summary:
            'Cancel a running generation (the key that owns it): it reads canceled at once (GET, SSE event canceled), its job stops at the next NFE boundary and tells its backend to stop; the quota of images not produced is given back, nothing is cached, an Idempotency-Key replays the canceled record',
          security: bearer,
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            200: {
              description:
                'The generation, status canceled (the decided outcome; its job may still be stopping)',
              content: json('Generation'),
            },
            401: error('Missing or unknown API key'),
            403: error('Key lacks the generations:write scope'),
            404: error('Unknown id, or another key’s generation (generation_not_found)'),
            409: error(
              'generation_finished: it already succeeded, failed or was canceled (error.status says which)',
            ),
          },
        },
      },
      '/v1/models': {
        get: {
          operationId: 'listModels',
          summary: 'Models served, with manifests and file URLs',
          responses: { 200: { description: 'Model list', content: json('ModelList') } },
        },
      },
      '/v1/models/{id}': {
        get: {
          operationId: 'getModel',
          summary: 'One model: manifest and where to download its ONNX/tokenizer files',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            200: { description: 'The model', content: json('Model') },
            404: error('Unknown model'),
          },
        },
      },
      '/v1/models/{id}/files/{key}': {
        get: {
          operationId: 'getModelFile',
          summary: 'A model file by manifest key (immutable; ETag = sha256)',
          parameters: [
            { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
            { name: 'key', in: 'path', required: true, schema: { type: 'string' } },
          ],
          responses: {
            200: {
              description:
                'File bytes (ONNX as octet-stream, tokenizers and manifests as JSON, a licence notice as text)',
              content: {
                'application/octet-stream': {},
                'application/json': {},
                'text/plain': {},
              },
            },
            304: { description: 'Not modified' },
            404: error('Unknown file'),
          },
        },
      },
      '/v1/images/{name}': {
        get: {
          operationId: 'getImage',
          summary: 'A generated PNG by signed URL (as returned in Generation.images[].url)',
          parameters: [
            { name: 'name', in: 'path', required: true, schema: { type: 'string' } },
            { name: 'exp', in: 'query', required: true, schema: { type: 'integer' } },
            { name: 'sig', in: 'query', required: true, schema: { type: 'string' } },
          ],
          responses: {
            200: { description: 'PNG', content: { 'image/png': {} } },
            403: error('Expired or invalid signature'),
            404: error('Unknown image'),
          },
        },
      },
      '/v1/keys/{id}': {
        delete: {
          operationId: 'revokeKey',
          summary:
            'Revoke the calling key itself: refused at once by this isolate (its open streams end with error key_revoked), elsewhere within ~70 s; signed image URLs stay valid until they expire',
          security: bearer,
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            200: { description: 'Revoked', content: json('RevokedKey') },
            400: error('Malformed Authorization header'),
            401: error('Missing or unknown key'),
            403: error("Not the calling key's id"),
          },
        },
      },
      '/v1/tokens': {
        post: {
          operationId: 'createToken',
          summary:
            'Mint a short-lived client token with an API key (for browsers: the key stays on your server). It is sent like the key, acts as the key (same generations, same quota) with the scopes asked for, expires (401 token_expired) and dies with the key',
          security: bearer,
          requestBody: { required: true, content: json('TokenRequest') },
          responses: {
            201: { description: 'The token', content: json('ClientToken') },
            400: error('Malformed JSON or Authorization header'),
            401: error('Missing or unknown API key'),
            403: error(
              'token_cannot_mint (a client token cannot mint tokens), or forbidden (scopes the key lacks)',
            ),
            408: error('Body not received within 10 s'),
            413: error('Body too large'),
            415: error('Body is not application/json in UTF-8'),
            422: error('Not a JSON object, or invalid ttlSeconds (1 … 3600) or scopes'),
          },
        },
      },
      '/v1/webhook-secret': {
        get: {
          operationId: 'getWebhookSecret',
          summary:
            "The calling key's webhook signing secret (Standard Webhooks whsec_…; derived from the key, stable until the key is replaced)",
          security: bearer,
          responses: {
            200: { description: 'The secret', content: json('WebhookSecret') },
            401: error('Missing or unknown API key'),
            403: error('A client token cannot read it'),
          },
        },
      },
      '/healthz': {
        get: { operationId: 'health', responses: { 200: { description: 'Worker alive' } } },
      },
      '/readyz': {
        get: {
          operationId: 'ready',
          responses: {
            200: { description: 'At least one backend ready', content: json('Health') },
            503: { description: 'No backend ready', content: json('Health') },
          },
        },
      },
    },
  }
  return cached
}
