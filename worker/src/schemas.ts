/**
 * @module schemas
 * The zod schemas of the public API. Handlers validate with them and openapi.ts renders the same
 * objects into the OpenAPI document, so the document cannot drift from what is enforced.
 */
import { MAX_COUNT, MAX_NFE, MAX_OUTPUT_SIZE, MAX_PROMPT_CHARS, MAX_SEED } from '@piflow/protocol'
import { z } from 'zod'
import { SCOPES } from './key-record.ts'

/** What a generation's webhook may be sent for (webhooks.ts delivers them). */
export const WEBHOOK_EVENTS = ['start', 'progress', 'completed'] as const

/** Registry of named schemas that become `#/components/schemas/<id>`. */
export const apiSchemas = z.registry<{ id: string; description?: string }>()

/** Request bodies are small: a prompt and a few numbers. */
export const MAX_BODY_BYTES = 16 * 1024

export const generationRequestSchema = z
  .object({
    prompt: z
      .string()
      .max(MAX_PROMPT_CHARS, `must be at most ${MAX_PROMPT_CHARS} characters`)
      .refine((s) => s.trim().length > 0, 'must not be empty')
      .describe('What to draw.'),
    // No default here: the default model is configuration (the first of PIFLOW_MODELS), filled in
    // by generation-request.ts, so switching it is one change of wrangler.toml.
    model: z
      .string()
      .min(1)
      .max(64)
      .optional()
      .describe('Model id (GET /v1/models). Default: the first model GET /v1/models lists.'),
    nfe: z
      .int()
      .min(1)
      .max(MAX_NFE)
      .optional()
      .describe("Network evaluations; one of the model's `sampling.nfeOptions`."),
    seed: z
      .int()
      .min(0)
      .max(MAX_SEED)
      .optional()
      .describe(
        'Image i uses noise seed (seed + i) mod 2^32. Seeded requests are deterministic and cached.',
      ),
    size: z
      .int()
      .min(1)
      .max(MAX_OUTPUT_SIZE)
      .optional()
      .describe(
        "Square output size in pixels; one of the model's `image.outputSizes` (a model generated on its backend: a multiple of `image.multipleOf` within `image.minSide`…`image.maxSide`).",
      ),
    guidance: z
      .number()
      .min(0)
      .max(100)
      .optional()
      .describe(
        "Guidance scale within the model's `guidance.min`…`guidance.max`; not allowed for a model whose `guidance.default` is null.",
      ),
    count: z.int().min(1).max(MAX_COUNT).default(1).describe('Number of images.'),
    format: z.enum(['png']).default('png'),
    response: z
      .enum(['url', 'base64'])
      .default('url')
      .describe('`url`: signed image URLs; `base64`: also inline the PNG bytes.'),
    preview: z
      .boolean()
      .default(true)
      .describe('SSE only: attach a small PNG preview of the x0 estimate to progress events.'),
    webhook: z
      .string()
      .max(2048)
      .optional()
      .describe(
        'https URL to POST the events of webhookEvents to (Standard Webhooks signatures, GET /v1/webhook-secret); private, loopback and link-local targets are refused (loopback over http is allowed in local mode).',
      ),
    webhookEvents: z
      .array(z.enum(WEBHOOK_EVENTS))
      .min(1)
      .max(WEBHOOK_EVENTS.length)
      .optional()
      .describe(
        'Which events to send: start, progress (one per NFE), completed (default: completed).',
      ),
  })
  .strict()
apiSchemas.add(generationRequestSchema, { id: 'GenerationRequest' })
/** A request body as the schema parsed it, its model resolved (absent: the server's default model). */
export type GenerationRequest = Omit<z.infer<typeof generationRequestSchema>, 'model'> & {
  model: string
}

export const imageSchema = z.object({
  index: z.int(),
  seed: z.int(),
  url: z.string().describe('Signed, expiring URL of the PNG.'),
  width: z.int(),
  height: z.int(),
  contentType: z.literal('image/png'),
  sha256: z.string(),
  bytes: z.int(),
  data: z.string().optional().describe('base64 PNG when `response` was `base64`.'),
})
apiSchemas.add(imageSchema, { id: 'Image' })

export const errorSchema = z.object({
  error: z.object({
    code: z.string().describe('Stable machine-readable code.'),
    message: z.string(),
    fields: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
  requestId: z.string(),
})
apiSchemas.add(errorSchema, { id: 'Error' })

export const generationSchema = z.object({
  id: z.string(),
  object: z.literal('generation'),
  status: z
    .enum(['queued', 'running', 'succeeded', 'failed', 'canceled'])
    .describe(
      '`queued`: waiting for a backend slot (see queuePosition); `canceled`: stopped by POST /v1/generations/{id}/cancel.',
    ),
  queuePosition: z
    .int()
    .min(1)
    .optional()
    .describe('While queued: its place in the model’s queue (1 = next to run).'),
  model: z.string(),
  prompt: z.string(),
  nfe: z.int(),
  seed: z.int(),
  size: z.int(),
  guidance: z.number().describe('0 for a model without guidance.'),
  count: z.int(),
  cached: z.boolean().describe('true when served from the cache without touching a backend.'),
  progress: z.object({ step: z.int(), nfe: z.int() }),
  images: z.array(imageSchema),
  path: z.literal('remote'),
  integration: z.enum(['edge', 'backend']).describe('Where the policy rollout ran.'),
  backends: z.array(z.string()).describe('Backends that served the student forwards.'),
  timings: z.object({
    totalMs: z.number(),
    forwardMs: z.number(),
    integrateMs: z.number(),
    encodeMs: z.number(),
  }),
  createdAt: z.string(),
  completedAt: z.string().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  requestId: z.string().describe('Request that created the generation.'),
})
apiSchemas.add(generationSchema, { id: 'Generation' })
export type Generation = z.infer<typeof generationSchema>

export const acceptedGenerationSchema = z.object({
  id: z.string(),
  status: generationSchema.shape.status,
  urls: z.object({
    get: z.string().describe('GET: the generation (JSON).'),
    stream: z.string().describe('GET with Accept: text/event-stream: its events (EventSource).'),
    cancel: z.string().describe('POST: cancel it.'),
  }),
})
apiSchemas.add(acceptedGenerationSchema, { id: 'AcceptedGeneration' })

export const modelFileSchema = z.object({
  key: z.string(),
  role: z.string(),
  sha256: z.string(),
  bytes: z.int(),
  url: z.string().describe('Where clients (e.g. @piflow/sdk/local) download the file.'),
})
export const modelSchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  manifest: z
    .record(z.string(), z.unknown())
    .describe(
      "The model manifest (models/<id>/manifest.json); for a model generated on its backend, that backend's /v1/models entry (capabilities: ['generate']).",
    ),
  files: z.array(modelFileSchema),
})
apiSchemas.add(modelSchema, { id: 'Model' })
export const modelListSchema = z.object({ object: z.literal('list'), data: z.array(modelSchema) })
apiSchemas.add(modelListSchema, { id: 'ModelList' })

export const revokedKeySchema = z.object({
  id: z.string().describe('The key id (the `<id>` of `pf_<id>_<secret>`).'),
  object: z.literal('api_key'),
  revoked: z.literal(true),
})
apiSchemas.add(revokedKeySchema, { id: 'RevokedKey' })

export const tokenRequestSchema = z
  .object({
    ttlSeconds: z
      .int()
      .min(1)
      .max(3600)
      .default(600)
      .describe('Lifetime in seconds (at most an hour).'),
    scopes: z
      .array(z.enum(SCOPES))
      .min(1)
      .max(SCOPES.length)
      .optional()
      .describe(
        "A subset of the key's scopes; default generations:write + generations:read (those the key has).",
      ),
  })
  .strict()
apiSchemas.add(tokenRequestSchema, { id: 'TokenRequest' })

export const clientTokenSchema = z.object({
  token: z.string().describe('Send as Authorization: Bearer <token>, like the key.'),
  expiresAt: z.string().describe('ISO 8601; afterwards requests answer 401 token_expired.'),
  scopes: z.array(z.enum(SCOPES)),
})
apiSchemas.add(clientTokenSchema, { id: 'ClientToken' })

export const webhookSecretSchema = z.object({
  secret: z
    .string()
    .describe(
      'whsec_<base64>: verifies webhook-signature (Standard Webhooks); stable for this key.',
    ),
})
apiSchemas.add(webhookSecretSchema, { id: 'WebhookSecret' })

export const healthSchema = z.object({
  status: z.enum(['ok', 'degraded']),
  backends: z.array(
    z.object({
      id: z.string(),
      healthy: z.boolean(),
      circuit: z.enum(['closed', 'open', 'half-open']),
    }),
  ),
})
apiSchemas.add(healthSchema, { id: 'Health' })

/** Turns zod issues into the public field-error list. */
export function fieldErrors(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((issue) => ({
    path:
      issue.code === 'unrecognized_keys' ? issue.keys.join(',') : issue.path.map(String).join('.'),
    message: issue.message,
  }))
}
