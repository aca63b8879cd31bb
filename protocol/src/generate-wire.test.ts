import { describe, expect, it } from 'vitest'
import { RequestValidationError } from './errors.ts'
import {
  type GenerateModel,
  generateEventSchema,
  generateModelSchema,
  generateRequestBody,
  generateRequestOptions,
} from './generate-wire.ts'
import { MAX_COUNT, MAX_PROMPT_CHARS } from './limits.ts'
import { normalizeGeneration } from './request.ts'

/** The `/v1/models` entry of backend/PROTOCOL.md's example (pi-FLUX.1 on a GPU). */
const fluxEntry = {
  id: 'pi-flux1-4nfe',
  capabilities: ['generate'],
  family: 'flux',
  runtime: 'torch',
  policy: { type: 'gm', k: 8 },
  latent: { channels: 16, height: 128, width: 128 },
  image: {
    defaultWidth: 1024,
    defaultHeight: 1024,
    minSide: 256,
    maxSide: 2048,
    multipleOf: 16,
    maxPixels: 4194304,
  },
  text: { maxSequenceLength: 512, maxPromptChars: 2000 },
  guidance: { default: 3.5, min: 1, max: 10, input: 'guidance' },
  defaultNfe: 4,
  nfeOptions: [4],
  sampling: { '4': { shift: 3.2, finalStepSizeScale: 0.5, temperature: 'auto' } },
  maxCount: 8,
  maxBatchSize: 8,
  inputs: [],
  outputs: [],
  dtype: 'bfloat16',
  executionProvider: 'cuda',
}
/** pi-Qwen-Image: no embedded guidance (the PyTorch backend sends min/max as null). */
const qwenEntry = {
  ...fluxEntry,
  id: 'pi-qwen-image-4nfe',
  guidance: { default: null, min: null, max: null, input: null },
}

const flux = generateModelSchema.parse(fluxEntry)
const qwen = generateModelSchema.parse(qwenEntry)
const remote = (entry: GenerateModel) => ({ id: entry.id, options: generateRequestOptions(entry) })

function failingFields(input: Parameters<typeof normalizeGeneration>[0], entry: GenerateModel) {
  try {
    normalizeGeneration(input, remote(entry))
  } catch (error) {
    expect(error).toBeInstanceOf(RequestValidationError)
    return (error as RequestValidationError).fields.map((f) => f.path).sort()
  }
  throw new Error('expected a RequestValidationError')
}

describe('generate models (backend/PROTOCOL.md "Whole generations")', () => {
  it('parses an entry and refuses one without the generate capability or its limits', () => {
    expect(flux.image.maxSide).toBe(2048)
    expect(generateModelSchema.safeParse({ ...fluxEntry, capabilities: ['forward'] }).success).toBe(
      false,
    )
    const { image: _image, ...noImage } = fluxEntry
    expect(generateModelSchema.safeParse(noImage).success).toBe(false)
    expect(generateModelSchema.safeParse({ ...fluxEntry, nfeOptions: [] }).success).toBe(false)
  })

  it("normalises against the backend's options: defaults, squares on its grid, its guidance", () => {
    const { params, tokenIds } = normalizeGeneration(
      { prompt: '  a  red apple ', seed: 7 },
      remote(flux),
    )
    expect(params).toEqual({
      model: 'pi-flux1-4nfe',
      prompt: 'a red apple',
      nfe: 4,
      seed: 7,
      size: 1024,
      guidance: 3.5,
      count: 1,
    })
    expect(tokenIds).toBeNull() // the backend encodes the text
    expect(normalizeGeneration({ prompt: 'x', size: 256 }, remote(flux)).params.size).toBe(256)
    expect(normalizeGeneration({ prompt: 'x', size: 2048 }, remote(flux)).params.size).toBe(2048)
    for (const size of [240, 1000, 2064]) {
      expect(failingFields({ prompt: 'x', size }, flux), String(size)).toEqual(['size'])
    }
    expect(failingFields({ prompt: 'x', nfe: 8, guidance: 11 }, flux)).toEqual(['guidance', 'nfe'])
  })

  it('a side is bounded by maxPixels as well as maxSide', () => {
    const small = generateModelSchema.parse({
      ...fluxEntry,
      image: { ...fluxEntry.image, maxPixels: 512 * 512 },
    })
    expect(normalizeGeneration({ prompt: 'x', size: 512 }, remote(small)).params.size).toBe(512)
    expect(failingFields({ prompt: 'x', size: 528 }, small)).toEqual(['size'])
  })

  it('stays within the public limits: count, prompt characters', () => {
    const options = generateRequestOptions(flux)
    expect(options.maxCount).toBe(MAX_COUNT) // the entry allows 8
    expect(options.maxPromptChars).toBe(MAX_PROMPT_CHARS) // the entry allows 2000
    expect(failingFields({ prompt: 'x', count: MAX_COUNT + 1 }, flux)).toEqual(['count'])
    expect(failingFields({ prompt: 'y'.repeat(MAX_PROMPT_CHARS + 1) }, flux)).toEqual(['prompt'])
  })

  it('a model without guidance refuses one and sends none', () => {
    expect(failingFields({ prompt: 'x', guidance: 3.5 }, qwen)).toEqual(['guidance'])
    const { params } = normalizeGeneration({ prompt: 'a house', seed: 1 }, remote(qwen))
    expect(params.guidance).toBe(0)
    const body = JSON.parse(generateRequestBody(params, qwen, false))
    expect(body).toEqual({
      prompt: 'a house',
      seed: 1,
      count: 1,
      nfe: 4,
      width: 1024,
      height: 1024,
      preview: false,
    })
    const fluxBody = JSON.parse(generateRequestBody({ ...params, guidance: 2 }, flux, true))
    expect(fluxBody).toMatchObject({ guidance: 2, preview: true })
  })

  it('parses the stream events and refuses ones outside the protocol', () => {
    const image = {
      type: 'image',
      id: 'gen_1',
      index: 0,
      seed: 7,
      width: 64,
      height: 64,
      contentType: 'image/png',
      bytes: 3,
      sha256: 'a'.repeat(64),
      data: 'AAEC',
    }
    expect(generateEventSchema.parse(image)).toMatchObject({ type: 'image', index: 0 })
    expect(generateEventSchema.safeParse({ ...image, sha256: 'xyz' }).success).toBe(false)
    expect(generateEventSchema.safeParse({ ...image, data: 'not base64!' }).success).toBe(false)
    expect(generateEventSchema.safeParse({ type: 'surprise', id: 'gen_1' }).success).toBe(false)
    expect(
      generateEventSchema.parse({
        type: 'error',
        id: 'gen_1',
        error: { code: 'cancelled', message: 'cancel request' },
        requestId: 'r',
      }),
    ).toMatchObject({ error: { code: 'cancelled' } })
  })
})
