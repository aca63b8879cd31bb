import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { PolicyOptionError } from '../errors.ts'
import { createGmPolicy } from '../gm.ts'
import { randn } from '../noise.ts'
import { rollout } from '../rollout.ts'
import type { GmOutput, LatentShape } from '../types.ts'
import { assembleWat, wasmModuleSource } from './assemble.ts'
import { activeGmKernel, configureGmKernel, fromGroupMajor, toGroupMajor } from './gm-wasm.ts'

afterEach(() => configureGmKernel({ kernel: 'auto' }))

/** A reproducible GM output and source state (σ_src = 0.9) for one shape. */
function problem(B: number, K: number, C: number, H: number, W: number, seed: number) {
  const HW = H * W
  const shape: LatentShape = { batch: B, channels: C, height: H, width: W }
  const lw = randn(new Float32Array(B * K * HW), seed + 1)
  for (let i = 0; i < lw.length; i++) lw[i] *= 2
  const output: GmOutput<Float32Array> = {
    type: 'gm',
    k: K,
    meansU: randn(new Float32Array(B * K * C * HW), seed),
    logweights: lw,
    logstds: Float32Array.from({ length: B }, (_, b) => -1.5 + 0.5 * b),
  }
  const xSrc = randn(new Float32Array(B * C * HW), seed + 2)
  const sigmaSrc = Array.from({ length: B }, (_, b) => 0.9 - 0.1 * b)
  return { shape, output, xSrc, sigmaSrc, size: B * C * HW, weights: B * K * HW }
}

/** |a − b| ≤ atol + rtol·|b| everywhere (the golden float32 tolerance by default). */
function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, rtol = 1e-4, atol = 1e-5) {
  expect(a.length).toBe(b.length)
  let worst = 0
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]) - (atol + rtol * Math.abs(b[i])))
  }
  expect(worst).toBeLessThanOrEqual(0)
}

describe('GM kernel choice', () => {
  it('Float32Array policies run the wasm kernel by default, Float64Array ones the JS kernel', () => {
    const p = problem(1, 2, 3, 2, 2, 1)
    expect(activeGmKernel()).toBe('wasm')
    expect(createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape).kernel).toBe('wasm')
    const f64 = {
      ...p.output,
      meansU: Float64Array.from(p.output.meansU),
      logweights: Float64Array.from(p.output.logweights),
      logstds: Float64Array.from(p.output.logstds),
    }
    expect(createGmPolicy(f64, Float64Array.from(p.xSrc), p.sigmaSrc, p.shape).kernel).toBe('js')
    expect(() =>
      createGmPolicy(f64, Float64Array.from(p.xSrc), p.sigmaSrc, p.shape, { kernel: 'wasm' }),
    ).toThrow(PolicyOptionError)
    configureGmKernel({ kernel: 'js' })
    expect(createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape).kernel).toBe('js')
    expect(createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape, { kernel: 'wasm' }).kernel).toBe(
      'wasm',
    )
  })

  it('rejects an unknown kernel name with PolicyOptionError', () => {
    expect(() => configureGmKernel({ kernel: 'gpu' as 'js' })).toThrow(PolicyOptionError)
  })
})

describe('wasm GM kernel agrees with the JS kernel (float32 tolerance)', () => {
  // Shapes: HW not a multiple of 4 (pad lanes), K < C and K > C, B = 2 with different σ_src and
  // log-std per sample, K = 1.
  const shapes = [
    [1, 8, 3, 5, 7],
    [2, 4, 16, 3, 3],
    [1, 32, 4, 4, 4],
    [2, 1, 2, 1, 3],
  ] as const

  for (const [B, K, C, H, W] of shapes) {
    it(`velocity, x0_hat, weights, step and a rollout at B=${B} K=${K} C=${C} ${H}×${W}`, () => {
      const p = problem(B, K, C, H, W, 10 * K + C)
      const js = createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape, { kernel: 'js' })
      const wasm = createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape, { kernel: 'wasm' })
      expect(wasm.kernel).toBe('wasm')
      expectClose(wasm.meansX0(), js.meansX0(), 0, 0)
      expectClose(wasm.logweightsEffective(), js.logweightsEffective(), 0, 0)

      const xT = randn(new Float32Array(p.size), 99)
      const sigmaT = p.sigmaSrc.map((s) => s * 0.6)
      const [a, b] = [new Float32Array(p.size), new Float32Array(p.size)]
      expectClose(wasm.velocity(a, xT, sigmaT), js.velocity(b, xT, sigmaT))
      expectClose(wasm.x0Hat(a, xT, sigmaT), js.x0Hat(b, xT, sigmaT))
      const [wa, wb] = [new Float32Array(p.weights), new Float32Array(p.weights)]
      expectClose(wasm.posteriorWeights(wa, xT, sigmaT), js.posteriorWeights(wb, xT, sigmaT))

      const sigmaNext = sigmaT.map((s) => s * 0.9)
      expectClose(wasm.step(xT.slice(), sigmaT, sigmaNext), js.step(xT.slice(), sigmaT, sigmaNext))

      const opts = { sigmaSrc: p.sigmaSrc[0], sigmaDst: 0.2, shift: 3.2, totalSubsteps: 128 }
      if (B === 1) {
        const xa = p.xSrc.slice()
        const xb = p.xSrc.slice()
        rollout(wasm, xa, opts)
        rollout(js, xb, opts)
        expectClose(xa, xb, 1e-3, 1e-4) // the golden rollout bounds (100+ chained substeps)
      }
    })
  }

  it('drops masked components and sharpens with temperature like the JS kernel', () => {
    const p = problem(2, 4, 3, 3, 3, 7)
    const opts = {
      dropoutMask: [true, false, true, false, true, true, true, true],
      temperature: 0.4,
    }
    const js = createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape, { ...opts, kernel: 'js' })
    const wasm = createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape, { ...opts, kernel: 'wasm' })
    const xT = randn(new Float32Array(p.size), 5)
    const [wa, wb] = [new Float32Array(p.weights), new Float32Array(p.weights)]
    wasm.posteriorWeights(wa, xT, [0.5, 0.4])
    js.posteriorWeights(wb, xT, [0.5, 0.4])
    expectClose(wa, wb)
    // sample 0 drops components 0 and 2: their weights are exactly 0
    for (let p9 = 0; p9 < 9; p9++) expect([wa[p9], wa[2 * 9 + p9]]).toEqual([0, 0])
    const [a, b] = [new Float32Array(p.size), new Float32Array(p.size)]
    expectClose(wasm.velocity(a, xT, [0.5, 0.4]), js.velocity(b, xT, [0.5, 0.4]))
  })

  it('a rollout started mid-segment by a query does not disturb it', () => {
    const p = problem(1, 4, 3, 2, 3, 3)
    const wasm = createGmPolicy(p.output, p.xSrc, p.sigmaSrc, p.shape)
    const run = wasm.startRollout(p.xSrc) as NonNullable<ReturnType<typeof wasm.startRollout>>
    run.step([0.9], [0.8])
    const before = run.write(new Float32Array(p.size))
    wasm.velocity(new Float32Array(p.size), randn(new Float32Array(p.size), 4), [0.7])
    expect(run.write(new Float32Array(p.size))).toEqual(before)
  })
})

describe('released policies and pooled memory', () => {
  it('a released policy throws, and the next policy of its shape (reusing its memory) matches a fresh one', () => {
    // HW = 5: pad lanes, which must read as zero again after the previous policy used them
    const a = problem(1, 4, 3, 1, 5, 1)
    const b = problem(1, 4, 3, 1, 5, 2)
    const xT = randn(new Float32Array(b.size), 6)
    const fresh = createGmPolicy(b.output, b.xSrc, b.sigmaSrc, b.shape)
    const expected = fresh.velocity(new Float32Array(b.size), xT, [0.5])
    const rolledFresh = b.xSrc.slice()
    rollout(fresh, rolledFresh, { sigmaSrc: 0.9, sigmaDst: 0.1, shift: 3.2, totalSubsteps: 64 })

    const first = createGmPolicy(a.output, a.xSrc, a.sigmaSrc, a.shape)
    rollout(first, a.xSrc.slice(), { sigmaSrc: 0.9, sigmaDst: 0.1, shift: 3.2, totalSubsteps: 64 })
    first.release?.()
    first.release?.() // idempotent
    expect(() => first.velocity(new Float32Array(a.size), xT, [0.5])).toThrow(PolicyOptionError)
    expect(() => first.startRollout?.(a.xSrc)).toThrow(PolicyOptionError)

    const reused = createGmPolicy(b.output, b.xSrc, b.sigmaSrc, b.shape)
    expect(reused.velocity(new Float32Array(b.size), xT, [0.5])).toEqual(expected)
    const rolled = b.xSrc.slice()
    rollout(reused, rolled, { sigmaSrc: 0.9, sigmaDst: 0.1, shift: 3.2, totalSubsteps: 64 })
    expect(rolled).toEqual(rolledFresh)
  })
})

describe('group-major layout', () => {
  it('fromGroupMajor inverts toGroupMajor for any B, planes, HW', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 11 }),
        (B, planes, HW) => {
          const src = Float32Array.from({ length: B * planes * HW }, (_, i) => i + 1)
          const buf = new Float32Array(3 + B * planes * Math.ceil(HW / 4) * 4)
          toGroupMajor(src, buf, 3, B, planes, HW)
          expect(fromGroupMajor(buf, 3, new Float32Array(src.length), B, planes, HW)).toEqual(src)
          // pad lanes stay zero
          const used = buf.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0)
          expect(used).toBe(src.length)
        },
      ),
    )
  })
})

describe('committed wasm module', () => {
  it('gm-kernel.wasm.ts is what gm-kernel.wat assembles to (run `npm run build:wasm -w @piflow/policy`)', async () => {
    const dir = new URL('./', import.meta.url)
    const bytes = await assembleWat(
      'gm-kernel.wat',
      readFileSync(new URL('gm-kernel.wat', dir), 'utf8'),
    )
    const committed = readFileSync(new URL('gm-kernel.wasm.ts', dir), 'utf8')
    expect(committed).toBe(wasmModuleSource('gm-kernel.wat', bytes))
  })
})
