/**
 * The WebGPU twin of the policy module against every applicable golden case (gm_velocity,
 * dx_velocity, rollout, sampling_loop; float32 and half-float means) plus its property checks, in
 * real headless Chromium and in Node with Dawn. Each runtime runs the whole suite once (beforeAll);
 * every case and check is then its own test. A runtime without a WebGPU adapter skips its tests with
 * the reason. Golden cases come from PIFLOW_GOLDEN_DIR (default fixtures/golden).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { loadCases } from '../conformance/cases.ts'
import { goldenDir } from '../support/fixtures.ts'
import { runInChromium } from './chromium.ts'
import { PROPERTY_NAMES } from './properties.ts'
import type { RuntimeReport } from './report.ts'
import { runInNode } from './run.ts'
import { appliesTo, type Variant } from './run-case.ts'

const dir = goldenDir()
const cases = loadCases(dir)
const runs: { id: string; variant: Variant }[] = [
  ...(['f32', 'f16'] as const).flatMap((variant) =>
    cases.filter((c) => appliesTo(c, variant)).map((c) => ({ id: c.id, variant })),
  ),
  ...PROPERTY_NAMES.map((name) => ({
    id: `property:${name}`,
    variant: (name.includes('half') ? 'f16' : 'f32') as Variant,
  })),
]

const RUNTIMES = {
  chromium: () =>
    runInChromium(
      dir,
      cases.filter((c) => appliesTo(c, 'f32')).map((c) => c.file),
    ),
  node: () => runInNode(dir, []),
} as const

for (const [runtime, run] of Object.entries(RUNTIMES)) {
  describe(`WebGPU policy conformance (${runtime})`, () => {
    let report: RuntimeReport
    beforeAll(async () => {
      report = await run()
    }, 600_000)

    it('ran on an adapter or says why not', () => {
      expect(report.adapter ?? report.skipped, report.logs?.join('\n')).toBeTruthy()
    })

    for (const { id, variant } of runs) {
      it(`${variant} ${id}`, (ctx) => {
        if (report.skipped) ctx.skip(report.skipped)
        const result = report.results.find((r) => r.id === id && r.variant === variant)
        expect(result, `no result for ${id}; ${report.logs?.join('\n') ?? ''}`).toBeDefined()
        const failures = result!.fields.filter((f) => !f.ok).map((f) => f.message)
        expect(failures, `${report.adapter}`).toEqual([])
        expect(result!.ok).toBe(true)
      })
    }
  })
}
