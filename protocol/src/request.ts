/**
 * @module request
 * Request normalisation: a generation request (the public API's body, or the SDK's in-browser input)
 * checked against the limits and the model, with defaults filled in. The edge worker and the SDK's local
 * path both normalise through {@link normalizeGeneration}, so the same input gives the same
 * {@link GenerationParams} — and so the same image — on both. The prompt is tokenized here, once: the
 * ids travel on to the conditioning tensors (tensors.ts).
 */
import { type Manifest, type Tokenizer, TokenizerError } from '@piflow/models'
import { type FieldError, RequestValidationError } from './errors.ts'
import type { RequestOptions } from './generate-wire.ts'
import { MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED } from './limits.ts'

/**
 * The normalised parameters that determine a generation's images. The worker (which adds its cache
 * fields) and the SDK's in-browser path normalise a request to this.
 */
export interface GenerationParams {
  model: string
  prompt: string
  nfe: number
  seed: number
  size: number
  guidance: number
  count: number
}

/** What a request asks for; every field but `prompt` has a default. */
export interface GenerationInput {
  prompt: string
  nfe?: number | undefined
  seed?: number | undefined
  size?: number | undefined
  guidance?: number | undefined
  count?: number | undefined
}

/**
 * The model a request is normalised against: a manifest (the ONNX students, whose prompt is tokenized
 * here), or the request options a whole-generation backend declares for its model (generate-wire.ts),
 * whose text is encoded on the backend.
 */
export type RequestModel =
  | {
      id: string
      manifest: Manifest
      /**
       * The model's tokenizer. Without one the prompt is checked for characters only, and the backend
       * checks its length in tokens.
       */
      tokenizer?: Tokenizer | undefined
    }
  | { id: string; options: RequestOptions }

/** A normalised request. */
export interface NormalizedGeneration {
  params: GenerationParams
  /** Whether the caller chose the seed (a request without one is not reproducible, not cacheable). */
  seeded: boolean
  /** The prompt's token ids (`text.maxLength`, padded), or null for a model without a tokenizer here. */
  tokenIds: number[] | null
}

/** Options of {@link normalizeGeneration}. */
export interface NormalizeOptions {
  /** Most images this caller may ask for (an API key's own cap; never above MAX_COUNT). @default MAX_COUNT */
  maxCount?: number | undefined
}

/**
 * One spelling per meaning: NFC, trimmed, single spaces, so equal prompts give equal cache keys and
 * tokens.
 */
const normalizePrompt = (prompt: string): string =>
  prompt.normalize('NFC').trim().replace(/\s+/g, ' ')

const isIntegerIn = (value: unknown, min: number, max: number): value is number =>
  Number.isInteger(value) && (value as number) >= min && (value as number) <= max

/**
 * The request options a manifest implies: its NFE options, its output sizes (the native one by
 * default when it offers it, else the first) and its guidance range.
 */
export function manifestRequestOptions(manifest: Manifest): RequestOptions {
  const sizes = manifest.image.outputSizes
  const { default: defaultGuidance, min, max } = manifest.guidance
  return {
    defaultNfe: manifest.sampling.defaultNfe,
    nfeOptions: manifest.sampling.nfeOptions,
    defaultSize: sizes.includes(manifest.image.width) ? manifest.image.width : sizes[0]!,
    sizeError: (size) => (sizes.includes(size) ? null : `must be one of ${sizes.join(', ')}`),
    guidance: { default: defaultGuidance, min, max },
    maxPromptChars: MAX_PROMPT_CHARS,
    maxCount: MAX_COUNT,
  }
}

/**
 * The prompt's token ids, or null with a field error: whatever the tokenizer refuses is the caller's
 * error too (never an internal one), and a prompt with no word the tokenizer reads is refused, since
 * the model would see only padding and draw an unconditional image, not what was asked for.
 */
function tokenizePrompt(
  prompt: string,
  tokenizer: Tokenizer,
  most: number,
  errors: FieldError[],
): number[] | null {
  let encoded: { ids: number[]; count: number }
  try {
    encoded = tokenizer.encodeWithCount(prompt)
  } catch (error) {
    if (!(error instanceof TokenizerError)) throw error
    errors.push({ path: 'prompt', message: error.message })
    return null
  }
  const { ids, count } = encoded
  if (count === 0) {
    errors.push({
      path: 'prompt',
      message:
        'has no word this model reads (runs of a-z and 0-9); emoji and punctuation alone are ignored',
    })
  }
  if (count > most)
    errors.push({ path: 'prompt', message: `is ${count} tokens; this model reads at most ${most}` })
  return ids
}

/**
 * Normalises `input` for `model`: fills defaults (the model's nfe, size and guidance; count 1; a
 * random seed), normalises the prompt, checks every field and, for a manifest model with its
 * tokenizer, tokenizes the prompt once. A model without guidance gets `guidance: 0` and refuses one.
 * @throws {RequestValidationError} listing every failing field.
 */
export function normalizeGeneration(
  input: GenerationInput,
  model: RequestModel,
  options: NormalizeOptions = {},
): NormalizedGeneration {
  const rules = 'options' in model ? model.options : manifestRequestOptions(model.manifest)
  const maxCount = Math.min(options.maxCount ?? MAX_COUNT, rules.maxCount)
  const errors: FieldError[] = []
  const check = (ok: boolean, path: string, message: string) => {
    if (!ok) errors.push({ path, message })
  }

  const nfe = input.nfe ?? rules.defaultNfe
  const { nfeOptions } = rules
  check(nfeOptions.includes(nfe), 'nfe', `must be one of ${nfeOptions.join(', ')}`)
  const size = input.size ?? rules.defaultSize
  const sizeError = rules.sizeError(size)
  check(sizeError === null, 'size', sizeError ?? '')
  let guidance = 0
  if (rules.guidance === null) {
    check(input.guidance === undefined, 'guidance', 'this model takes no guidance; leave it out')
  } else {
    const { min, max } = rules.guidance
    guidance = input.guidance ?? rules.guidance.default
    check(guidance >= min && guidance <= max, 'guidance', `must be between ${min} and ${max}`)
  }
  const count = input.count ?? 1
  check(isIntegerIn(count, 1, maxCount), 'count', `must be an integer from 1 to ${maxCount}`)
  const seeded = input.seed !== undefined
  const seed = input.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]!
  check(isIntegerIn(seed, 0, MAX_SEED), 'seed', `must be an integer from 0 to ${MAX_SEED}`)

  // Limits are checked after normalising too: NFC may lengthen a string.
  const prompt = normalizePrompt(String(input.prompt ?? ''))
  const maxChars = rules.maxPromptChars
  let tokenIds: number[] | null = null
  if (prompt.length === 0) check(false, 'prompt', 'must not be empty')
  else if (prompt.length > maxChars) {
    check(
      false,
      'prompt',
      `is ${prompt.length} characters once normalised (Unicode NFC); at most ${maxChars}`,
    )
  } else if ('manifest' in model && model.tokenizer) {
    tokenIds = tokenizePrompt(prompt, model.tokenizer, model.manifest.text.maxLength, errors)
  }

  if (errors.length > 0) throw new RequestValidationError(errors)
  return {
    params: { model: model.id, prompt, nfe, seed, size, guidance, count },
    seeded,
    tokenIds,
  }
}
