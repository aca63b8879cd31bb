/**
 * @module test/webgpu/report
 * The plain-JSON report one runtime (Chromium or Node/Dawn) produces, and its console rendering.
 */
import type { WebGpuCaseResult } from './run-case.ts'

/** Results of one runtime; `skipped` (with `adapter: null`) says why nothing ran. */
export interface RuntimeReport {
  runtime: 'chromium' | 'node'
  adapter: string | null
  skipped?: string
  results: WebGpuCaseResult[]
  /** browser console output, when there was any */
  logs?: string[]
}

/** One line per case (failure details indented); returns the counts. */
export function printReport(
  report: RuntimeReport,
  expectedCount: number,
  print: (line: string) => void = console.log,
  verbose = false,
): { passed: number; failed: number; skipped: number } {
  if (report.skipped) {
    print(`SKIP [${report.runtime}] ${expectedCount} cases: ${report.skipped}`)
    return { passed: 0, failed: 0, skipped: expectedCount }
  }
  print(`[${report.runtime}] adapter: ${report.adapter}`)
  let passed = 0
  let failed = 0
  for (const r of report.results) {
    const label = `[${report.runtime} ${r.variant}] ${r.id} (${r.kind})`
    const compared = r.fields.length
    if (r.ok) {
      passed++
      print(
        `PASS ${label}: ${compared} fields${r.skipped.length ? `, ${r.skipped.length} internals not produced` : ''}`,
      )
    } else {
      failed++
      print(`FAIL ${label}`)
    }
    for (const f of r.fields)
      if (verbose || !f.ok) print(`     ${f.ok ? 'ok  ' : 'FAIL'} ${f.message}`)
  }
  if (!report.results.length && expectedCount > 0) {
    failed++
    print(`FAIL [${report.runtime}] no case ran`)
  }
  if (report.logs && (failed > 0 || verbose)) for (const line of report.logs) print(`     ${line}`)
  return { passed, failed, skipped: 0 }
}
