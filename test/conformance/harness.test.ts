/** The conformance harness itself: decoding, discovery, comparison messages, and that it can fail. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { decodeValue, isBoolTensor, isTensor, loadCases, parseCase } from './cases.ts'
import { compareClose, compareExact, multiIndex } from './compare.ts'
import { checkCase, runAndCheckCpu } from './cpu.ts'

const tol = { rtol: 1e-9, atol: 1e-10 }

const gmCase = (id: string, expectedU: (number | string)[]) => ({
  schema_version: 1,
  id,
  kind: 'gm_velocity',
  description: 'K=1, query at the source: u = means_u',
  inputs: {
    means_u: { shape: [1, 1, 1, 1, 2], data: [0.5, -0.25] },
    logweights: { shape: [1, 1, 1, 1, 2], data: [0, 0] },
    logstds: { shape: [1, 1, 1, 1, 1], data: [-1] },
    x_src: { shape: [1, 1, 1, 2], data: [0.1, 0.2] },
    sigma_src: { shape: [1], data: [0.7] },
    x_t: { shape: [1, 1, 1, 2], data: [0.1, 0.2] },
    sigma_t: { shape: [1], data: [0.7] },
    eps: 1e-6,
    temperature: 1,
    dropout_mask: null,
  },
  expected: { u: { shape: [1, 1, 1, 2], data: expectedU } },
  tolerance: { float64: tol, float32: { rtol: 1e-4, atol: 1e-5 } },
})

describe('cases', () => {
  it('decodes non-finite strings and boolean masks', () => {
    const v = decodeValue(
      { a: { shape: [3], data: ['-inf', 'inf', 'nan'] }, m: { shape: [2], data: [true, false] } },
      't',
    )
    const rec = v as Record<string, unknown>
    expect(isTensor(rec['a'])).toBe(true)
    const a = rec['a'] as { data: Float64Array }
    expect(a.data[0]).toBe(Number.NEGATIVE_INFINITY)
    expect(a.data[1]).toBe(Number.POSITIVE_INFINITY)
    expect(Number.isNaN(a.data[2])).toBe(true)
    expect(isBoolTensor(rec['m'])).toBe(true)
  })

  it('rejects a tensor whose data does not match its shape', () => {
    expect(() => decodeValue({ shape: [2, 2], data: [1, 2, 3] }, 'x')).toThrow(/does not match/)
  })

  const dir = mkdtempSync(path.join(tmpdir(), 'piflow-golden-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('loads the index, then any other *.json with a kind', () => {
    writeFileSync(path.join(dir, 'listed.json'), JSON.stringify(gmCase('listed', [0.5, -0.25])))
    writeFileSync(path.join(dir, 'extra.json'), JSON.stringify(gmCase('extra', [0.5, -0.25])))
    writeFileSync(path.join(dir, 'notes.json'), JSON.stringify({ hello: 1 }))
    writeFileSync(
      path.join(dir, 'index.json'),
      JSON.stringify({
        schema_version: 1,
        cases: [{ id: 'listed', kind: 'gm_velocity', file: 'listed.json' }],
      }),
    )
    expect(loadCases(dir).map((c) => c.id)).toEqual(['listed', 'extra'])
  })
})

describe('compare', () => {
  it('names the worst element by multi-index', () => {
    expect(multiIndex(7, [2, 2, 2])).toBe('[1, 1, 1]')
    const r = compareClose('u', [0, 0, 0, 0.5], [0, 0, 0, 0], [2, 2], tol)
    expect(r.ok).toBe(false)
    expect(r.message).toMatch(/1\/4 values out of tolerance/)
    expect(r.message).toMatch(/worst \[1, 1\] \(flat 3\)/)
  })

  it('matches −∞ only with −∞ and NaN only with NaN', () => {
    expect(
      compareClose('w', [Number.NEGATIVE_INFINITY], [Number.NEGATIVE_INFINITY], [1], tol).ok,
    ).toBe(true)
    expect(compareClose('w', [-1e300], [Number.NEGATIVE_INFINITY], [1], tol).ok).toBe(false)
    expect(compareClose('w', [Number.NaN], [0], [1], tol).ok).toBe(false)
  })

  it('compares integers and booleans exactly', () => {
    expect(compareExact('n', 37, 37, []).ok).toBe(true)
    expect(compareExact('n', [37, 18], [37, 19], [2]).message).toMatch(
      /first \[1\]: got 18, expected 19/,
    )
    expect(compareExact('m', Uint8Array.of(1, 0), [true, false], [2]).ok).toBe(true)
  })
})

describe('checkCase', () => {
  it('passes a correct case and fails a perturbed one', async () => {
    const good = parseCase(JSON.stringify(gmCase('good', [0.5, -0.25])), 'good.json')
    expect((await runAndCheckCpu(good, 'float64')).ok).toBe(true)
    const bad = parseCase(JSON.stringify(gmCase('bad', [0.5, -0.2500001])), 'bad.json')
    const r = await runAndCheckCpu(bad, 'float64')
    expect(r.ok).toBe(false)
    expect(r.fields[0].message).toMatch(/^u: 1\/2 values out of tolerance/)
  })

  it('reports an unknown kind as a failure, not a skip', async () => {
    const c = parseCase(
      JSON.stringify({ ...gmCase('weird', [0, 0]), kind: 'gm_hessian' }),
      'w.json',
    )
    const r = await runAndCheckCpu(c, 'float64')
    expect(r.ok).toBe(false)
    expect(r.fields[0].message).toMatch(/unsupported case kind "gm_hessian"/)
  })

  it('requires core fields from other implementations but lets them skip internals', () => {
    const c = parseCase(JSON.stringify(gmCase('core', [0.5, -0.25])), 'c.json')
    c.expected['means_x0'] = { kind: 'tensor', shape: [2], data: Float64Array.of(1, 2) }
    const partial = checkCase(c, new Map([['u', [0.5, -0.25]]]), 'float64', { requireAll: false })
    expect(partial.ok).toBe(true)
    expect(partial.skipped).toEqual(['means_x0'])
    expect(checkCase(c, new Map(), 'float64', { requireAll: false }).ok).toBe(false)
    expect(checkCase(c, new Map([['u', [0.5, -0.25]]]), 'float64').ok).toBe(false)
  })
})
