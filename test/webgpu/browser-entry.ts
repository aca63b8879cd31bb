/// <reference types="@webgpu/types" />
/**
 * @module test/webgpu/browser-entry
 * Page script bundled by chromium.ts: fetches the listed golden files, runs them against the WebGPU
 * twin on the page's own adapter and returns the report to playwright.
 */
import { parseCase } from '../conformance/cases.ts'
import type { RuntimeReport } from './report.ts'
import { runWebGpuSuite } from './suite.ts'

async function piflowConformance(files: string[]): Promise<RuntimeReport> {
  const skip = (reason: string): RuntimeReport => ({
    runtime: 'chromium',
    adapter: null,
    skipped: reason,
    results: [],
  })
  if (!('gpu' in navigator))
    return skip('navigator.gpu is missing (no WebGPU in this browser/context)')
  const adapter = await navigator.gpu.requestAdapter()
  if (!adapter) return skip('navigator.gpu.requestAdapter() returned null')
  const device = await adapter.requestDevice({
    requiredFeatures: adapter.features.has('shader-f16') ? ['shader-f16'] : [],
  })
  try {
    const cases = await Promise.all(
      files.map(async (file) => parseCase(await (await fetch(`/golden/${file}`)).text(), file)),
    )
    const { vendor, architecture, description } = adapter.info
    return {
      runtime: 'chromium',
      adapter: `chromium: ${[vendor, architecture, description].filter(Boolean).join(' ')}`,
      results: await runWebGpuSuite(device, cases),
    }
  } finally {
    device.destroy()
  }
}

Object.assign(globalThis, { piflowConformance })
