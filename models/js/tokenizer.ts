/**
 * @module tokenizer
 * Word-level tokenizer shipped as JSON with each model; the twin of models/recipe/tokenizer.py.
 * The rule is chosen so TypeScript and Python agree exactly: ASCII A–Z are lower-cased (no Unicode case
 * folding, which differs between runtimes), every character outside [a-z0-9] separates words, unknown
 * words map to `unkId`, the ids are truncated to `maxLength` and right-padded with `padId`.
 */
import * as z from 'zod/mini'
import { TokenizerError } from './errors.ts'
import { zodMessages } from './manifest.ts'

// zod/mini, as in manifest.ts: the browser SDK bundles this parser.
const specSchema = z.object({
  version: z.literal(1),
  type: z.literal('word'),
  lowercase: z.literal('ascii'),
  pattern: z.literal('[a-z0-9]+'),
  maxLength: z.int().check(z.positive(), z.lte(512)),
  padId: z.int().check(z.gte(0)),
  unkId: z.int().check(z.gte(0)),
  vocab: z.array(z.string()).check(z.minLength(2)),
})

/** The tokenizer JSON file (`tokenizer.json` in a model directory). */
export type TokenizerSpec = z.infer<typeof specSchema>

/**
 * Prompts longer than this many UTF-16 units are rejected before any work is done: the public limit of
 * a request's prompt (after normalisation, `@piflow/protocol`) and the tokenizer's own guard.
 */
export const MAX_PROMPT_CHARS = 1000

export interface Tokenizer {
  readonly maxLength: number
  readonly padId: number
  readonly vocabSize: number
  /** Token ids of one prompt, exactly `maxLength` long. */
  encode(text: string): number[]
  /**
   * The same ids plus how many words the prompt had before truncation to `maxLength` (so a caller can
   * refuse a prompt the model would cut), from one pass over the prompt.
   */
  encodeWithCount(text: string): { ids: number[]; count: number }
}

/** Splits a prompt into the tokenizer's words (ASCII lower-case, runs of [a-z0-9]). */
export function splitWords(text: string): string[] {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase()).match(/[a-z0-9]+/g) ?? []
}

/**
 * Builds a tokenizer from its JSON spec.
 * @throws {TokenizerError} `invalid_tokenizer` when the spec is malformed.
 */
export function createTokenizer(spec: unknown): Tokenizer {
  const parsed = specSchema.safeParse(spec, zodMessages)
  if (!parsed.success) {
    throw new TokenizerError('invalid_tokenizer', `invalid tokenizer spec: ${parsed.error.message}`)
  }
  const { vocab, maxLength, padId, unkId } = parsed.data
  if (padId >= vocab.length || unkId >= vocab.length) {
    throw new TokenizerError('invalid_tokenizer', 'padId/unkId outside the vocabulary')
  }
  const index = new Map<string, number>()
  vocab.forEach((word, id) => {
    if (!index.has(word)) index.set(word, id)
  })
  const encodeWithCount = (text: string) => {
    if (text.length > MAX_PROMPT_CHARS) {
      throw new TokenizerError(
        'prompt_too_long',
        `prompt has ${text.length} characters, limit ${MAX_PROMPT_CHARS}`,
      )
    }
    const words = splitWords(text)
    const ids = words.slice(0, maxLength).map((w) => index.get(w) ?? unkId)
    while (ids.length < maxLength) ids.push(padId)
    return { ids, count: words.length }
  }
  return {
    maxLength,
    padId,
    vocabSize: vocab.length,
    encode: (text) => encodeWithCount(text).ids,
    encodeWithCount,
  }
}

/**
 * Tokenizes a batch of prompts into the `tokens` input of the model's ONNX files: int64 (B, maxLength),
 * row-major. An empty prompt gives all `padId` (the unconditional input for classifier-free guidance).
 */
export function tokenize(tokenizer: Tokenizer, prompts: string | readonly string[]): BigInt64Array {
  const list = typeof prompts === 'string' ? [prompts] : prompts
  const out = new BigInt64Array(list.length * tokenizer.maxLength)
  list.forEach((prompt, b) => {
    tokenizer.encode(prompt).forEach((id, i) => {
      out[b * tokenizer.maxLength + i] = BigInt(id)
    })
  })
  return out
}
