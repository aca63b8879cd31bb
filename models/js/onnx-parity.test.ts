import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseManifest } from './manifest.ts'
import { FIXTURES_DIR, MODEL_DIR, readJson } from './test-support.ts'
import { createTokenizer, tokenize } from './tokenizer.ts'

/** Sparse torch reference of one output tensor (see models/recipe/export.py write_fixture). */
interface Summary {
  shape: number[]
  stride: number
  samples: number[]
  mean: number
  meanAbs: number
}
interface Fixture {
  prompts: string[]
  sigma: number[]
  tokens: number[][]
  tolerance: { atol: number; rtol: number }
  teacher: Record<string, Summary>
  student: Record<string, Summary>
}

const fixture = readJson(join(FIXTURES_DIR, 'onnx-parity.json')) as Fixture
const manifest = parseManifest(readJson(join(MODEL_DIR, 'manifest.json')))
const { channels: c, height: h, width: w } = manifest.latent
const { atol, rtol } = fixture.tolerance

/** The fixture's deterministic input: x[i] = 0.9·sin(0.1·i + 0.3), float32. */
function fixtureX(batch: number): Float32Array {
  const x = new Float32Array(batch * c * h * w)
  for (let i = 0; i < x.length; i++) x[i] = Math.fround(0.9 * Math.sin(0.1 * i + 0.3))
  return x
}

function expectMatches(name: string, got: ort.Tensor, ref: Summary): void {
  expect(Array.from(got.dims), name).toEqual(ref.shape)
  const data = got.data as Float32Array
  let worst = 0
  ref.samples.forEach((exp, j) => {
    const excess = Math.abs(data[j * ref.stride] - exp) - (atol + rtol * Math.abs(exp))
    worst = Math.max(worst, excess)
  })
  expect(worst, `${name}: max excess over tolerance`).toBeLessThanOrEqual(0)
  let sum = 0
  let sumAbs = 0
  for (const v of data) {
    sum += v
    sumAbs += Math.abs(v)
  }
  expect(Math.abs(sum / data.length - ref.mean), `${name} mean`).toBeLessThanOrEqual(atol * 10)
  expect(Math.abs(sumAbs / data.length - ref.meanAbs), `${name} meanAbs`).toBeLessThanOrEqual(
    atol * 10,
  )
}

describe('ONNX (onnxruntime-node) vs torch fixtures', () => {
  let student: ort.InferenceSession
  let teacher: ort.InferenceSession
  const tokenizer = createTokenizer(readJson(join(MODEL_DIR, 'tokenizer.json')))

  beforeAll(async () => {
    student = await ort.InferenceSession.create(join(MODEL_DIR, manifest.files.student.path))
    teacher = await ort.InferenceSession.create(join(MODEL_DIR, manifest.files.teacher.path))
  })
  afterAll(async () => {
    await student?.release()
    await teacher?.release()
  })

  function feeds(batch: number) {
    const tokens = tokenize(tokenizer, fixture.prompts.slice(0, batch))
    expect(Array.from(tokens, Number)).toEqual(fixture.tokens.slice(0, batch).flat())
    return {
      x: new ort.Tensor('float32', fixtureX(2).subarray(0, batch * c * h * w), [batch, c, h, w]),
      sigma: new ort.Tensor('float32', Float32Array.from(fixture.sigma.slice(0, batch)), [batch]),
      tokens: new ort.Tensor('int64', tokens, [batch, tokenizer.maxLength]),
    }
  }

  it('uses the input/output names the manifest declares', () => {
    expect(student.inputNames).toEqual(manifest.files.student.inputs.map((i) => i.name))
    expect(student.outputNames).toEqual(manifest.files.student.outputs.map((o) => o.name))
    expect(teacher.outputNames).toEqual(['u'])
  })

  it(`student GM outputs match torch (atol ${atol}, rtol ${rtol})`, async () => {
    const out = await student.run(feeds(2))
    for (const name of ['means_u', 'logweights', 'logstds']) {
      expectMatches(name, out[name], fixture.student[name])
    }
  })

  it(`teacher velocity matches torch (atol ${atol}, rtol ${rtol})`, async () => {
    const out = await teacher.run(feeds(2))
    expectMatches('u', out.u, fixture.teacher.u)
  })

  it('has a dynamic batch: batch 1 equals the first item of batch 2', async () => {
    const one = await student.run(feeds(1))
    const two = await student.run(feeds(2))
    const a = one.means_u.data as Float32Array
    const b = (two.means_u.data as Float32Array).subarray(0, a.length)
    let maxDiff = 0
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]))
    expect(maxDiff).toBeLessThan(1e-4)
  })
})
