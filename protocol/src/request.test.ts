import type { Manifest, Tokenizer } from '@piflow/models'
import { describe, expect, it } from 'vitest'
import { RequestValidationError } from './errors.ts'
import { MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED } from './limits.ts'
import { normalizeGeneration } from './request.ts'
import { shippedModel } from './test-support.ts'

const model = shippedModel()
const { manifest } = model

/** The field paths a rejected input names, sorted. */
function failingFields(...args: Parameters<typeof normalizeGeneration>): string[] {
  try {
    normalizeGeneration(...args)
  } catch (error) {
    expect(error).toBeInstanceOf(RequestValidationError)
    return (error as RequestValidationError).fields.map((f) => f.path).sort()
  }
  throw new Error('expected a RequestValidationError')
}

/** The shipped model with another manifest (what a second model would declare). */
const withManifest = (changes: Partial<Manifest>) => ({
  ...model,
  manifest: { ...manifest, ...changes } as Manifest,
})

describe('normalizeGeneration', () => {
  it("fills the model's defaults and keeps the caller's seed", () => {
    const { params, seeded, tokenIds } = normalizeGeneration(
      { prompt: 'red apple', seed: 7 },
      model,
    )
    expect(params).toEqual({
      model: 'piflow-emoji',
      prompt: 'red apple',
      nfe: manifest.sampling.defaultNfe,
      seed: 7,
      size: manifest.image.width,
      guidance: manifest.guidance.default,
      count: 1,
    })
    expect(seeded).toBe(true)
    expect(tokenIds).toEqual(model.tokenizer.encode('red apple'))
  })

  it('draws a random 32-bit seed when none is given, and says so', () => {
    const seeds = new Set<number>()
    for (let i = 0; i < 8; i++) {
      const { params, seeded } = normalizeGeneration({ prompt: 'red apple' }, model)
      expect(seeded).toBe(false)
      expect(Number.isInteger(params.seed) && params.seed >= 0 && params.seed <= MAX_SEED).toBe(
        true,
      )
      seeds.add(params.seed)
    }
    expect(seeds.size).toBeGreaterThan(1)
  })

  it('spells one prompt one way: NFC, trimmed, single spaces', () => {
    const { params } = normalizeGeneration({ prompt: '  Cafe\u0301 \n\t au   lait ' }, model)
    expect(params.prompt).toBe('Café au lait')
  })

  it('lists every failing field at once', () => {
    expect(
      failingFields({ prompt: '  ', nfe: 3, size: 33, guidance: 99, count: 0, seed: -1 }, model),
    ).toEqual(['count', 'guidance', 'nfe', 'prompt', 'seed', 'size'])
    expect(failingFields({ prompt: 'a', count: 2.5, seed: MAX_SEED + 1 }, model)).toEqual([
      'count',
      'seed',
    ])
  })

  it('caps the count at the caller’s maxCount and never above MAX_COUNT', () => {
    expect(failingFields({ prompt: 'a', count: 3 }, model, { maxCount: 2 })).toEqual(['count'])
    expect(
      normalizeGeneration({ prompt: 'a', count: 2 }, model, { maxCount: 2 }).params.count,
    ).toBe(2)
    expect(failingFields({ prompt: 'a', count: MAX_COUNT + 1 }, model, { maxCount: 99 })).toEqual([
      'count',
    ])
  })

  it('checks the prompt length after normalising (NFC may lengthen it)', () => {
    expect(
      normalizeGeneration({ prompt: 'a'.repeat(MAX_PROMPT_CHARS) }, model).params.prompt,
    ).toHaveLength(MAX_PROMPT_CHARS)
    expect(failingFields({ prompt: 'a'.repeat(MAX_PROMPT_CHARS + 1) }, model)).toEqual(['prompt'])
    // U+0958 has no composed form: NFC turns each into two code units.
    const expanding = '\u0958'.repeat(MAX_PROMPT_CHARS / 2 + 1)
    expect(expanding.length).toBeLessThanOrEqual(MAX_PROMPT_CHARS)
    expect(expanding.normalize('NFC').length).toBeGreaterThan(MAX_PROMPT_CHARS)
    expect(failingFields({ prompt: expanding }, model)).toEqual(['prompt'])
  })

  it('refuses a prompt the model would truncate, counting its words once', () => {
    const most = manifest.text.maxLength
    const words = (n: number) => Array.from({ length: n }, () => 'apple').join(' ')
    expect(normalizeGeneration({ prompt: words(most) }, model).tokenIds).toHaveLength(most)
    expect(failingFields({ prompt: words(most + 1) }, model)).toEqual(['prompt'])
  })

  it('tokenizes the prompt once per request', () => {
    let calls = 0
    const counting: Tokenizer = {
      ...model.tokenizer,
      encode: (text) => {
        calls++
        return model.tokenizer.encode(text)
      },
      encodeWithCount: (text) => {
        calls++
        return model.tokenizer.encodeWithCount(text)
      },
    }
    normalizeGeneration({ prompt: 'red apple', count: 4 }, { ...model, tokenizer: counting })
    expect(calls).toBe(1)
  })

  it('checks a model without a tokenizer here (text encoded on the backend) for characters only', () => {
    const { tokenizer: _, ...remote } = model
    const long = Array.from({ length: 40 }, () => 'apple').join(' ')
    const { tokenIds, params } = normalizeGeneration({ prompt: long }, remote)
    expect(tokenIds).toBeNull()
    expect(params.prompt).toBe(long)
  })

  it("reads the options from the model's manifest", () => {
    const other = withManifest({
      image: { ...manifest.image, width: 64, outputSizes: [128, 256] },
      guidance: { default: 2, min: 1, max: 5, input: 'guidance' },
    })
    const { params } = normalizeGeneration({ prompt: 'a' }, other)
    expect(params.size).toBe(128) // the native width is not offered: the first size is the default
    expect(params.guidance).toBe(2)
    expect(failingFields({ prompt: 'a', guidance: 5.5 }, other)).toEqual(['guidance'])
  })
})
