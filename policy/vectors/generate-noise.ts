/**
 * Writes policy/vectors/noise.json: Philox4x32-10 known answers and the first normals of a few
 * (seed, offset) streams, for twins of `randn` in other languages (Python, WGSL) to check against.
 * Run: `npx tsx policy/vectors/generate-noise.ts` (the unit tests check the file is up to date).
 */
import { writeFileSync } from 'node:fs'
import { boxMuller, lnUniform, philox4x32, randn } from '../src/noise.ts'

const hex = (v: number) => v.toString(16).padStart(8, '0')
const f32Bits = (v: number) => hex(new Uint32Array(Float32Array.of(v).buffer)[0])

/** Random123 kat_vectors for philox4x32_10, plus a few extra keys/counters. */
const philoxCases: [number[], number[]][] = [
  [
    [0, 0, 0, 0],
    [0, 0],
  ],
  [
    [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0xffffffff, 0xffffffff],
  ],
  [
    [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    [0xa4093822, 0x299f31d0],
  ],
  [
    [1, 0, 0, 0],
    [42, 0],
  ],
  [
    [0, 1, 0, 0],
    [4294967295, 0],
  ],
]

export function buildNoiseVectors() {
  const philox = philoxCases.map(([ctr, key]) => ({
    counter: ctr.map(hex),
    key: key.map(hex),
    output: Array.from(philox4x32(Uint32Array.from(ctr), key[0], key[1]), hex),
  }))
  const pairs = [
    [0, 0],
    [0xffffffff, 0xffffffff],
    [0x80000000, 0x40000000],
    [0x12345678, 0x9abcdef0],
    [1, 0xbfffffff],
  ].map(([a, b]) => {
    const out = boxMuller(a, b, new Float64Array(2))
    return { a: hex(a), b: hex(b), ln_uniform_a: lnUniform(a), normals: Array.from(out) }
  })
  const streams = [
    { seed: 0, offset: 0, count: 16 },
    { seed: 1, offset: 0, count: 16 },
    { seed: 42, offset: 0, count: 16 },
    { seed: 4294967295, offset: 0, count: 8 },
    { seed: 7, offset: 1_000_003, count: 9 },
    { seed: 123, offset: 4 * 2 ** 32 + 2, count: 6 },
  ].map(({ seed, offset, count }) => {
    const values = randn(new Float64Array(count), seed, offset)
    return {
      seed,
      offset,
      float64: Array.from(values),
      float32_bits: Array.from(values, f32Bits),
    }
  })
  return {
    description:
      'Vectors for @piflow/policy randn (policy/NOISE.md). float64 values are exact (shortest round-trip decimal); float32_bits are the IEEE-754 bits of round-to-nearest-even float32.',
    philox4x32_10: philox,
    box_muller: pairs,
    streams,
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = new URL('./noise.json', import.meta.url)
  writeFileSync(path, `${JSON.stringify(buildNoiseVectors(), null, 1)}\n`)
  console.log(`wrote ${path.pathname}`)
}
