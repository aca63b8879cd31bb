import { describe, expect, it } from 'vitest'
import { createDxPolicy } from './dx.ts'
import { PolicyOptionError } from './errors.ts'
import { createGmPolicy } from './gm.ts'
import { rollout } from './rollout.ts'
import { createCpuIntegrator, sample } from './sample.ts'
import { buildSchedule } from './schedule.ts'
import type { FloatArray, GmOutput, LatentShape, SegmentIntegrator } from './types.ts'

const shape: LatentShape = { batch: 1, channels: 2, height: 1, width: 2 }
const xInit: Float64Array = Float64Array.of(1.2, -0.3, 0.4, 0.9)
const out = (step: number): GmOutput<Float64Array> => ({
  type: 'gm',
  k: 2,
  meansU: Float64Array.from({ length: 8 }, (_, i) => Math.cos(i + step)),
  logweights: Float64Array.from({ length: 4 }, (_, i) => Math.sin(i * step)),
  logstds: Float64Array.of(-2),
})
const schedule = buildSchedule({ nfe: 3, shift: 3.2, finalStepSizeScale: 0.5 })

describe('sample', () => {
  it('equals building each policy and rolling it out by hand; reports every step', async () => {
    const steps: number[] = []
    const seen: number[] = []
    const x = await sample({
      xInit,
      shape,
      schedule,
      eps: 1e-6,
      forward: async (_x, sigma, step) => {
        seen.push(sigma)
        return out(step)
      },
      onStep: ({ step, numSubsteps }) => {
        steps.push(step)
        expect(numSubsteps).toBe(schedule.steps[step].numSubsteps)
      },
    })
    expect(steps).toEqual([0, 1, 2])
    expect(seen).toEqual(schedule.steps.map((s) => s.sigmaSrc))
    expect(Array.from(xInit)).toEqual([1.2, -0.3, 0.4, 0.9]) // input untouched

    const manual = xInit.slice()
    for (const [k, step] of schedule.steps.entries()) {
      const pi = createGmPolicy(out(k), manual, [step.sigmaSrc], shape, {
        eps: 1e-6,
        temperature: step.temperature,
      })
      rollout(pi, manual, {
        sigmaSrc: step.sigmaSrc,
        sigmaDst: step.sigmaDst,
        shift: 3.2,
        totalSubsteps: 128,
      })
    }
    expect(Array.from(x)).toEqual(Array.from(manual))
  })

  it('uses a custom integrator with the per-step temperature (last step = 1)', async () => {
    const temps: number[] = []
    const cpu = createCpuIntegrator()
    const spy: SegmentIntegrator<FloatArray> = {
      name: 'webgpu',
      integrate: (o, x, seg, signal) => {
        temps.push(seg.temperature)
        return cpu.integrate(o, x, seg, signal)
      },
    }
    await sample({
      xInit,
      shape,
      schedule,
      forward: async (_x, _s, k) => out(k),
      integrator: spy,
      temperature: 0.5,
    })
    expect(temps).toEqual([0.5, 0.5, 1])
  })

  it('stops at the next step boundary when aborted', async () => {
    const controller = new AbortController()
    let calls = 0
    const run = sample({
      xInit,
      shape,
      schedule,
      signal: controller.signal,
      forward: async (_x, _s, k) => {
        calls++
        controller.abort(new Error('user cancelled'))
        return out(k)
      },
    })
    await expect(run).rejects.toThrow('user cancelled')
    expect(calls).toBe(1)
  })

  it('integrates DX students with the segment options given once', async () => {
    const dx = { segmentSize: 1 / 2.5, shift: 3.2, mode: 'grid' as const }
    const grid = (step: number) => ({
      type: 'dx' as const,
      n: 3,
      gridU: Float64Array.from({ length: 12 }, (_, i) => Math.sin(i * (step + 1))),
    })
    const x = await sample({ xInit, shape, schedule, dx, forward: async (_x, _s, k) => grid(k) })
    const manual = xInit.slice()
    for (const [k, step] of schedule.steps.entries()) {
      const pi = createDxPolicy(grid(k), manual, [step.sigmaSrc], shape, dx)
      rollout(pi, manual, {
        sigmaSrc: step.sigmaSrc,
        sigmaDst: step.sigmaDst,
        shift: 3.2,
        totalSubsteps: 128,
      })
    }
    expect(Array.from(x)).toEqual(Array.from(manual))
  })

  it('rejects a DX output without dx options, and a bad xInit', async () => {
    await expect(
      sample({
        xInit,
        shape,
        schedule,
        forward: async () => ({ type: 'dx', n: 1, gridU: new Float64Array(4) }),
      }),
    ).rejects.toThrow(PolicyOptionError)
    await expect(
      sample({ xInit: new Float64Array(3), shape, schedule, forward: async () => out(0) }),
    ).rejects.toThrow(/xInit must have 4 elements/)
  })
})
