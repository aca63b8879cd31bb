import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  decodeSafetensors,
  encodeSafetensors,
  SafetensorsError,
  type SafetensorsErrorCode,
  type SafetensorsTensor,
} from './safetensors.ts'

// Written by the reference implementation (PyPI safetensors 0.8.0) — see fixtures/safetensors/make-fixture.py.
const fixtureDir = fileURLToPath(new URL('../fixtures/safetensors/', import.meta.url))
const referenceBytes = new Uint8Array(readFileSync(`${fixtureDir}reference.safetensors`))
const reference = JSON.parse(readFileSync(`${fixtureDir}reference.json`, 'utf8')) as {
  metadata: Record<string, string>
  dtypes: Record<string, string>
  tensors: Record<string, { shape: number[]; values: (number | boolean | string)[] }>
}

function referenceTensors(): Record<string, SafetensorsTensor> {
  const out: Record<string, SafetensorsTensor> = {}
  for (const [name, { shape, values }] of Object.entries(reference.tensors)) {
    const dtype = reference.dtypes[name]
    const v = values as never[]
    if (dtype === 'F32') out[name] = { dtype, shape, data: new Float32Array(v) }
    else if (dtype === 'F64') out[name] = { dtype, shape, data: new Float64Array(v) }
    else if (dtype === 'I32') out[name] = { dtype, shape, data: new Int32Array(v) }
    else if (dtype === 'U8') out[name] = { dtype, shape, data: new Uint8Array(v) }
    else if (dtype === 'BOOL') out[name] = { dtype, shape, data: new Uint8Array(v.map(Number)) }
    else if (dtype === 'F16') out[name] = { dtype, shape, data: new Uint16Array(v) }
    else if (dtype === 'I64') {
      out[name] = { dtype, shape, data: new BigInt64Array(values.map((s) => BigInt(s as string))) }
    } else throw new Error(`fixture dtype ${dtype} not handled`)
  }
  return out
}

/** A valid file built by hand: header JSON (unpadded), then data. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint) {
  const json = new TextEncoder().encode(
    typeof header === 'string' ? header : JSON.stringify(header),
  )
  const out = new Uint8Array(8 + json.length + data.length)
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true)
  out.set(json, 8)
  out.set(data, 8 + json.length)
  return out
}

function expectCode(fn: () => unknown, code: SafetensorsErrorCode) {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(SafetensorsError)
    expect((error as SafetensorsError).code).toBe(code)
    return
  }
  throw new Error(`expected SafetensorsError ${code}`)
}

describe('safetensors against the reference implementation', () => {
  it('decodes the bytes written by PyPI safetensors', () => {
    const { tensors, metadata } = decodeSafetensors(referenceBytes)
    expect(metadata).toEqual(reference.metadata)
    expect(Object.keys(tensors).sort()).toEqual(Object.keys(reference.tensors).sort())
    const expected = referenceTensors()
    for (const [name, tensor] of Object.entries(tensors)) {
      expect(tensor.dtype, name).toBe(reference.dtypes[name])
      expect(tensor.shape, name).toEqual(reference.tensors[name]?.shape)
      expect(tensor.data, name).toEqual(expected[name]?.data)
    }
    // int64 beyond 2^53 survives exactly
    expect((tensors.tokens as SafetensorsTensor).data[5]).toBe(2n ** 40n)
  })

  it('encodes the same tensors to the identical bytes', () => {
    const bytes = encodeSafetensors(referenceTensors(), reference.metadata)
    expect(Buffer.from(bytes).equals(Buffer.from(referenceBytes))).toBe(true)
  })

  it('returns zero-copy views when the data is aligned', () => {
    const { tensors } = decodeSafetensors(referenceBytes)
    expect(tensors.x?.data.buffer).toBe(referenceBytes.buffer)
  })
})

describe('safetensors round trip', () => {
  it('round-trips arbitrary float32/int64 tensors and metadata', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: false }), { maxLength: 40 }),
        fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 10 }),
        fc.dictionary(
          fc.string().filter((k) => k !== '__proto__'),
          fc.string(),
          { maxKeys: 4 },
        ),
        (floats, ints, metadata) => {
          const tensors: Record<string, SafetensorsTensor> = {
            a: { dtype: 'F32', shape: [floats.length], data: new Float32Array(floats) },
            b: { dtype: 'I64', shape: [1, ints.length], data: new BigInt64Array(ints) },
          }
          const decoded = decodeSafetensors(encodeSafetensors(tensors, metadata))
          expect(decoded.metadata).toEqual(metadata)
          expect(decoded.tensors.a).toEqual(tensors.a)
          expect(decoded.tensors.b).toEqual(tensors.b)
        },
      ),
      { numRuns: 200 },
    )
  })

  it('pads the header so the data section starts 8-byte aligned', () => {
    for (let n = 0; n < 10; n++) {
      const bytes = encodeSafetensors({}, { k: 'v'.repeat(n) })
      const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true))
      expect(headerLength % 8).toBe(0)
      expect(decodeSafetensors(bytes).metadata.k).toBe('v'.repeat(n))
    }
  })

  it('copies tensors whose offsets are unaligned', () => {
    // A U8 tensor of 1 byte first, then an F32: the F32 starts at an odd offset.
    const data = new Uint8Array([7, 0, 0, 128, 63])
    const bytes = rawFile(
      {
        u: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
        f: { dtype: 'F32', shape: [1], data_offsets: [1, 5] },
      },
      data,
    )
    const { tensors } = decodeSafetensors(bytes)
    expect(Array.from(tensors.f?.data as Float32Array)).toEqual([1])
  })
})

describe('safetensors rejects malformed input with stable codes', () => {
  const f32 = (begin: number, end: number, shape = [1]) => ({
    dtype: 'F32',
    shape,
    data_offsets: [begin, end],
  })

  it('too small / too large / out of bounds headers', () => {
    expectCode(() => decodeSafetensors(new Uint8Array(7)), 'header_too_small')
    expectCode(() => decodeSafetensors(rawFile({}, undefined, 2n ** 63n)), 'header_too_large')
    expectCode(
      () => decodeSafetensors(rawFile({ a: f32(0, 4) }), { maxHeaderBytes: 10 }),
      'header_too_large',
    )
    expectCode(() => decodeSafetensors(rawFile({}, undefined, 100n)), 'header_out_of_bounds')
  })

  it('header that is not a JSON object', () => {
    expectCode(() => decodeSafetensors(rawFile('{"a":')), 'invalid_header')
    expectCode(() => decodeSafetensors(rawFile('[1,2]')), 'invalid_header')
    expectCode(() => decodeSafetensors(rawFile('null')), 'invalid_header')
    expectCode(() => decodeSafetensors(rawFile({ a: 3 })), 'invalid_header')
    const badUtf8 = rawFile('{"\u00e9":1}')
    badUtf8[10] = 0xff
    expectCode(() => decodeSafetensors(badUtf8), 'invalid_header')
  })

  it('bad dtype, shape, metadata', () => {
    const data = new Uint8Array(4)
    expectCode(
      () => decodeSafetensors(rawFile({ a: { ...f32(0, 4), dtype: 'F33' } }, data)),
      'invalid_dtype',
    )
    expectCode(
      () => decodeSafetensors(rawFile({ a: { ...f32(0, 4), shape: [-1] } }, data)),
      'invalid_shape',
    )
    expectCode(
      () => decodeSafetensors(rawFile({ a: { ...f32(0, 4), shape: [1.5] } }, data)),
      'invalid_shape',
    )
    expectCode(
      () =>
        decodeSafetensors(
          rawFile({ a: { ...f32(0, 4), shape: [1, 1, 1, 1, 1, 1, 1, 1, 1] } }, data),
        ),
      'invalid_shape',
    )
    expectCode(
      () => decodeSafetensors(rawFile({ __metadata__: { a: 1 }, a: f32(0, 4) }, data)),
      'invalid_metadata',
    )
    expectCode(() => decodeSafetensors(rawFile({ __metadata__: [] })), 'invalid_metadata')
  })

  it('shape × dtype that disagrees with the byte range, including overflow', () => {
    expectCode(
      () => decodeSafetensors(rawFile({ a: f32(0, 4, [2]) }, new Uint8Array(4))),
      'size_mismatch',
    )
    expectCode(
      () =>
        decodeSafetensors(
          rawFile({ a: f32(0, 4, [2 ** 30, 2 ** 30, 2 ** 30]) }, new Uint8Array(4)),
        ),
      'size_mismatch',
    )
  })

  it('offsets out of bounds, overlapping, with holes, or reversed', () => {
    const data = new Uint8Array(8)
    expectCode(
      () => decodeSafetensors(rawFile({ a: f32(4, 8) }, new Uint8Array(4))),
      'invalid_offsets',
    )
    expectCode(
      () => decodeSafetensors(rawFile({ a: f32(0, 4), b: f32(2, 6) }, data)),
      'invalid_offsets',
    )
    expectCode(() => decodeSafetensors(rawFile({ a: f32(4, 8) }, data)), 'invalid_offsets')
    expectCode(() => decodeSafetensors(rawFile({ a: f32(0, 4) }, data)), 'invalid_offsets')
    expectCode(
      () => decodeSafetensors(rawFile({ a: { ...f32(0, 4), data_offsets: [4, 0] } }, data)),
      'invalid_offsets',
    )
    // a huge end never allocates: it is rejected from the header alone
    expectCode(
      () => decodeSafetensors(rawFile({ a: f32(0, 2 ** 52, [2 ** 50]) }, data)),
      'invalid_offsets',
    )
  })

  it('too many tensors', () => {
    const header: Record<string, unknown> = {}
    for (let i = 0; i < 5; i++) header[`t${i}`] = f32(i * 4, i * 4 + 4)
    expectCode(
      () => decodeSafetensors(rawFile(header, new Uint8Array(20)), { maxTensors: 4 }),
      'too_many_tensors',
    )
  })

  it('encode refuses inconsistent tensors', () => {
    expectCode(
      () => encodeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float32Array(3) } }),
      'size_mismatch',
    )
    expectCode(
      () =>
        encodeSafetensors({
          a: { dtype: 'F32', shape: [2], data: new Float64Array(2) as unknown as Float32Array },
        }),
      'invalid_tensor',
    )
    expectCode(
      () =>
        encodeSafetensors({ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }),
      'invalid_tensor',
    )
  })
})
