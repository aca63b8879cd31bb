import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { buildNoiseVectors } from '../vectors/generate-noise.ts'
import { PolicyOptionError } from './errors.ts'
import { philox4x32, randn } from './noise.ts'

const vectorsPath = fileURLToPath(new URL('../vectors/noise.json', import.meta.url))
const referencePy = fileURLToPath(new URL('../vectors/noise_reference.py', import.meta.url))
const hex = (a: Uint32Array) => Array.from(a, (v) => v.toString(16).padStart(8, '0')).join(' ')

/** Philox4x32-10 with BigInt arithmetic: an independent, obviously-correct transcription. */
function philoxBig(ctr: number[], key: number[]): number[] {
  let [c0, c1, c2, c3] = ctr.map(BigInt)
  let [k0, k1] = key.map(BigInt)
  const mask = 0xffffffffn
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + 0x9e3779b9n) & mask
      k1 = (k1 + 0xbb67ae85n) & mask
    }
    const p0 = 0xd2511f53n * c0
    const p1 = 0xcd9e8d57n * c2
    ;[c0, c1, c2, c3] = [
      ((p1 >> 32n) ^ c1 ^ k0) & mask,
      p1 & mask,
      ((p0 >> 32n) ^ c3 ^ k1) & mask,
      p0 & mask,
    ]
  }
  return [c0, c1, c2, c3].map(Number)
}

describe('philox4x32-10', () => {
  it("reproduces Random123's published known-answer vectors", () => {
    expect(hex(philox4x32(new Uint32Array(4), 0, 0))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8')
    expect(hex(philox4x32(new Uint32Array(4).fill(0xffffffff), 0xffffffff, 0xffffffff))).toBe(
      '408f276d 41c83b0e a20bc7c6 6d5451fd',
    )
    expect(
      hex(
        philox4x32(
          Uint32Array.of(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344),
          0xa4093822,
          0x299f31d0,
        ),
      ),
    ).toBe('d16cfe09 94fdcceb 5001e420 24126ea1')
  })

  it('matches a BigInt transcription on random counters and keys', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff })
    fc.assert(
      fc.property(fc.array(u32, { minLength: 4, maxLength: 4 }), u32, u32, (ctr, k0, k1) => {
        expect(Array.from(philox4x32(Uint32Array.from(ctr), k0, k1))).toEqual(
          philoxBig(ctr, [k0, k1]),
        )
      }),
      { numRuns: 300 },
    )
  })
})

describe('randn', () => {
  it('matches policy/vectors/noise.json bit for bit', () => {
    const stored = JSON.parse(readFileSync(vectorsPath, 'utf8'))
    expect(buildNoiseVectors()).toEqual(stored)
  })

  it('any slice equals the same slice of a longer draw (counter-based)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 0, max: 37 }),
        fc.integer({ min: 1, max: 20 }),
        (seed, offset, count) => {
          const all = randn(new Float64Array(64), seed)
          expect(Array.from(randn(new Float64Array(count), seed, offset))).toEqual(
            Array.from(all.subarray(offset, offset + count)),
          )
        },
      ),
      { numRuns: 50 },
    )
  })

  it('Float32Array gets the round-to-nearest float32 of the float64 stream', () => {
    const f64 = randn(new Float64Array(1000), 99)
    expect(randn(new Float32Array(1000), 99)).toEqual(Float32Array.from(f64))
  })

  it('looks standard normal (mean, variance, tails) and differs between seeds', () => {
    const x = randn(new Float64Array(200_000), 2024)
    let mean = 0
    let sq = 0
    let beyond2 = 0
    for (const v of x) {
      mean += v
      sq += v * v
      if (Math.abs(v) > 2) beyond2++
    }
    mean /= x.length
    const variance = sq / x.length - mean * mean
    expect(Math.abs(mean)).toBeLessThan(0.01) // 4.5σ of the sample mean
    expect(Math.abs(variance - 1)).toBeLessThan(0.015)
    expect(beyond2 / x.length).toBeCloseTo(0.0455, 2)
    expect(randn(new Float64Array(4), 1)).not.toEqual(randn(new Float64Array(4), 2))
  })

  it('validates seed, offset and output type', () => {
    expect(() => randn(new Float32Array(2), -1)).toThrow(PolicyOptionError)
    expect(() => randn(new Float32Array(2), 2 ** 32)).toThrow(PolicyOptionError)
    expect(() => randn(new Float32Array(2), 1.5)).toThrow(PolicyOptionError)
    expect(() => randn(new Float32Array(2), 1, -3)).toThrow(PolicyOptionError)
    expect(() => randn([] as unknown as Float32Array, 1)).toThrow(PolicyOptionError)
  })

  const python = ['/usr/bin/python3', 'python3'].find((p) =>
    p.startsWith('/') ? existsSync(p) : spawnSync(p, ['--version']).status === 0,
  )
  it.skipIf(!python)(
    'the pure-Python reference reproduces the vectors bit for bit (skipped: no python3)',
    () => {
      const r = spawnSync(python as string, [referencePy, '--check', vectorsPath], {
        encoding: 'utf8',
      })
      expect(r.stdout + r.stderr).toMatch(/16 passed, 0 failed/)
      expect(r.status).toBe(0)
    },
  )
})
