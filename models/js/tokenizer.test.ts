import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { TokenizerError } from './errors.ts'
import {
  FIXTURES_DIR,
  MODEL_DIR,
  PYTHON,
  pythonSkipReason,
  REPO_ROOT,
  readJson,
} from './test-support.ts'
import { createTokenizer, MAX_PROMPT_CHARS, splitWords, tokenize } from './tokenizer.ts'

interface Fixture {
  cases: { prompt: string; ids: number[] }[]
}

const spec = readJson(join(MODEL_DIR, 'tokenizer.json'))
const fixture = readJson(join(FIXTURES_DIR, 'tokenizer-prompts.json')) as Fixture
const tokenizer = createTokenizer(spec)

describe('tokenizer', () => {
  it('matches the ids the Python tokenizer committed in the fixture', () => {
    expect(fixture.cases.length).toBeGreaterThan(10)
    for (const { prompt, ids } of fixture.cases) {
      expect(tokenizer.encode(prompt), JSON.stringify(prompt)).toEqual(ids)
    }
  })

  const pySkip = pythonSkipReason(['json'])
  it.skipIf(pySkip !== null)(`matches the live Python tokenizer ${pySkip ?? ''}`, () => {
    const prompts = [
      ...fixture.cases.map((c) => c.prompt),
      'PARTY popper 🎉 with CONFETTI',
      'ÉCLAIR Über',
      'x'.repeat(40),
    ]
    const run = spawnSync(
      PYTHON,
      ['-m', 'models.recipe.fixtures', '--encode', JSON.stringify(prompts)],
      { cwd: REPO_ROOT, encoding: 'utf8' },
    )
    expect(run.status, run.stderr).toBe(0)
    const pyIds = JSON.parse(run.stdout) as number[][]
    for (const [i, p] of prompts.entries()) expect(tokenizer.encode(p), p).toEqual(pyIds[i])
  })

  it('lower-cases ASCII only and splits on everything outside [a-z0-9]', () => {
    expect(splitWords('Red HEART!')).toEqual(['red', 'heart'])
    expect(splitWords('café')).toEqual(['caf'])
    expect(splitWords('İstanbul')).toEqual(['stanbul'])
    expect(splitWords('')).toEqual([])
  })

  it('pads, truncates, and maps unknown words to unkId', () => {
    const ids = tokenizer.encode('zzzunknownword')
    expect(ids).toHaveLength(tokenizer.maxLength)
    expect(ids[0]).toBe(1)
    expect(ids.slice(1).every((id) => id === tokenizer.padId)).toBe(true)
    expect(tokenizer.encode('cat '.repeat(100))).toHaveLength(tokenizer.maxLength)
  })

  it('batches into an int64 (B, L) array for ONNX', () => {
    const t = tokenize(tokenizer, ['red heart', ''])
    expect(t).toBeInstanceOf(BigInt64Array)
    expect(t.length).toBe(2 * tokenizer.maxLength)
    expect(Array.from(t.slice(0, 2), Number)).toEqual(tokenizer.encode('red heart').slice(0, 2))
    expect(t.slice(tokenizer.maxLength).every((v) => v === 0n)).toBe(true)
  })

  it('rejects malformed specs and over-long prompts with typed errors', () => {
    expect(() => createTokenizer({ version: 1 })).toThrow(TokenizerError)
    try {
      tokenizer.encode('a'.repeat(MAX_PROMPT_CHARS + 1))
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(TokenizerError)
      expect((err as TokenizerError).code).toBe('prompt_too_long')
    }
  })
})
