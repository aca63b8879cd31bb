/**
 * @module generate-wire
 * The whole-generation extension of the backend protocol (backend/PROTOCOL.md "Whole generations"),
 * as the worker consumes it: the `/v1/models` entry of a `generate` model (what a request may ask of
 * it), the JSON body of `POST /v1/models/:id/generate`, and the NDJSON events it answers with. The
 * PyTorch backend (torch-backend/) is the server side; these schemas are the client side's one reading
 * of the same page, so what the edge validates is what the backend declares.
 */
import { z } from 'zod'
import { MAX_COUNT, MAX_NFE, MAX_OUTPUT_SIZE, MAX_PROMPT_CHARS } from './limits.ts'

const positiveInt = z.int().positive()

/** A `/v1/models` entry whose `capabilities` include `generate` (the fields the worker relies on). */
export const generateModelSchema = z.looseObject({
  id: z.string().min(1).max(64),
  capabilities: z.array(z.string()).refine((c) => c.includes('generate'), 'must include generate'),
  family: z.string().optional(),
  runtime: z.string().optional(),
  name: z.string().optional(),
  image: z.object({
    defaultWidth: positiveInt,
    defaultHeight: positiveInt,
    minSide: positiveInt,
    maxSide: positiveInt,
    multipleOf: positiveInt,
    maxPixels: positiveInt,
  }),
  text: z.looseObject({ maxPromptChars: positiveInt }),
  guidance: z.looseObject({
    default: z.number().nullable(),
    min: z.number().nullish(),
    max: z.number().nullish(),
  }),
  defaultNfe: positiveInt,
  nfeOptions: z.array(positiveInt.max(MAX_NFE)).min(1),
  /** per-NFE schedule settings (shift, finalStepSizeScale, …), as the backend's manifest has them */
  sampling: z
    .record(
      z.string(),
      z.looseObject({ shift: z.number().positive(), finalStepSizeScale: z.number().nonnegative() }),
    )
    .optional(),
  maxCount: positiveInt,
  maxBatchSize: positiveInt.optional(),
  dtype: z.string().optional(),
  executionProvider: z.string().optional(),
})
export type GenerateModel = z.infer<typeof generateModelSchema>

/** What a request may ask of a model, whatever describes it (a manifest or a backend's entry). */
export interface RequestOptions {
  defaultNfe: number
  nfeOptions: readonly number[]
  /** the square size a request gets when it names none */
  defaultSize: number
  /** why `size` (a square side in pixels) is refused, or null when the model can draw it */
  sizeError: (size: number) => string | null
  /** null: the model takes no guidance, and a request must not send one */
  guidance: { default: number; min: number; max: number } | null
  maxPromptChars: number
  maxCount: number
}

/**
 * The request options of a `generate` model: sizes are squares (the public API's `size`) that are
 * multiples of `multipleOf` within `minSide`…`maxSide` and `maxPixels`; every limit also stays within
 * the public API's own (prompt characters, images per request, output size).
 */
export function generateRequestOptions(model: GenerateModel): RequestOptions {
  const { image, guidance } = model
  const maxSide = Math.min(image.maxSide, MAX_OUTPUT_SIZE, Math.floor(Math.sqrt(image.maxPixels)))
  const sizeError = (size: number) =>
    Number.isInteger(size) &&
    size >= image.minSide &&
    size <= maxSide &&
    size % image.multipleOf === 0
      ? null
      : `must be a multiple of ${image.multipleOf} from ${image.minSide} to ${maxSide}`
  const min = guidance.min ?? guidance.default ?? 0
  const max = guidance.max ?? guidance.default ?? 0
  return {
    defaultNfe: model.defaultNfe,
    nfeOptions: model.nfeOptions,
    defaultSize: Math.min(image.defaultWidth, image.defaultHeight),
    sizeError,
    guidance: guidance.default === null ? null : { default: guidance.default, min, max },
    maxPromptChars: Math.min(model.text.maxPromptChars, MAX_PROMPT_CHARS),
    maxCount: Math.min(model.maxCount, MAX_COUNT),
  }
}

/** The body of `POST /v1/models/:id/generate` for a normalised request (square `size`). */
export function generateRequestBody(
  params: {
    prompt: string
    seed: number
    count: number
    nfe: number
    size: number
    guidance: number
  },
  model: GenerateModel,
  preview: boolean,
): string {
  return JSON.stringify({
    prompt: params.prompt,
    seed: params.seed,
    count: params.count,
    nfe: params.nfe,
    width: params.size,
    height: params.size,
    // A model without embedded guidance refuses the field (PROTOCOL.md): it is left out, not zeroed.
    ...(model.guidance.default === null ? {} : { guidance: params.guidance }),
    preview,
  })
}

const timingsSchema = z.looseObject({ totalMs: z.number().optional() })

/** One line of a generation's NDJSON stream (PROTOCOL.md "Whole generations", event table). */
export const generateEventSchema = z.discriminatedUnion('type', [
  z.looseObject({
    type: z.literal('queued'),
    id: z.string(),
    count: positiveInt,
    nfe: positiveInt,
    width: positiveInt,
    height: positiveInt,
    seed: z.int().nonnegative(),
  }),
  z.looseObject({ type: z.literal('started'), id: z.string() }),
  z.looseObject({
    type: z.literal('progress'),
    id: z.string(),
    step: positiveInt,
    nfe: positiveInt,
    preview: z.string().startsWith('data:image/png;base64,').optional(),
  }),
  z.looseObject({
    type: z.literal('image'),
    id: z.string(),
    index: z.int().nonnegative(),
    seed: z.int().nonnegative(),
    width: positiveInt,
    height: positiveInt,
    contentType: z.literal('image/png'),
    bytes: positiveInt,
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    data: z.base64(),
  }),
  z.looseObject({ type: z.literal('done'), id: z.string(), timings: timingsSchema.optional() }),
  z.looseObject({
    type: z.literal('error'),
    id: z.string(),
    error: z.object({ code: z.string(), message: z.string() }),
  }),
])
export type GenerateEvent = z.infer<typeof generateEventSchema>
