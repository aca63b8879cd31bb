/**
 * @module test/webgpu/run
 * `npm run conformance:webgpu`: every golden case whose kind the WebGPU twin implements (gm_velocity,
 * dx_velocity, rollout, sampling_loop), in float32 and in the half-float-means variant, in headless
 * Chromium and in Node with Dawn (`webgpu` package). Prints one line per case and runtime, failure
 * details, and a closing `N passed, N failed, N skipped`; exits 1 on any failure. A runtime without
 * an adapter is reported as skipped with the reason.
 *
 * Options: `--dir <path>` (else PIFLOW_GOLDEN_DIR, else fixtures/golden), `--runtime chromium|node|all`,
 * `--report <file>` (also write the JSON reports), `--verbose`, other arguments filter case ids.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type GoldenCase, loadCases } from '../conformance/cases.ts'
import { goldenDir } from '../support/fixtures.ts'
import { runInChromium } from './chromium.ts'
import { type DawnDevice, hasSystemVulkan, requestDawnDevice, swiftShaderEnv } from './node-dawn.ts'
import { printReport, type RuntimeReport } from './report.ts'
import { appliesTo } from './run-case.ts'
import { runWebGpuSuite, suiteSize } from './suite.ts'

const SELF = fileURLToPath(import.meta.url)
// `--import tsx` resolves from the working directory: the repository root has tsx installed.
const REPO_ROOT = path.resolve(path.dirname(SELF), '../..')
/** Set in the child that run.ts starts with SwiftShader's Vulkan ICD. */
const SWIFTSHADER_CHILD = 'PIFLOW_WEBGPU_SWIFTSHADER_CHILD'

/**
 * Node/Dawn report. Tries the machine's own Vulkan driver first; without an adapter, re-runs itself in
 * a child process with SwiftShader's ICD (LD_LIBRARY_PATH must be set at process start).
 */
export async function runInNode(dir: string, filters: readonly string[]): Promise<RuntimeReport> {
  // Without a system Vulkan loader Dawn can only fail here (and prints a warning): go to SwiftShader.
  const dawn: DawnDevice = hasSystemVulkan()
    ? await requestDawnDevice()
    : { device: null, reason: 'no system Vulkan loader (libvulkan.so.1)' }
  if (dawn.device) {
    const cases = selectCases(dir, filters)
    try {
      return {
        runtime: 'node',
        adapter: dawn.adapter,
        results: await runWebGpuSuite(dawn.device, cases),
      }
    } finally {
      dawn.device.destroy()
    }
  }
  const env = swiftShaderEnv()
  if (process.env[SWIFTSHADER_CHILD] || !env) {
    return {
      runtime: 'node',
      adapter: null,
      skipped: `${dawn.reason}; no SwiftShader ICD to fall back on`,
      results: [],
    }
  }
  const scratch = mkdtempSync(path.join(tmpdir(), 'piflow-webgpu-'))
  try {
    const reportFile = path.join(scratch, 'node.json')
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        SELF,
        '--runtime',
        'node',
        '--dir',
        dir,
        '--report',
        reportFile,
        '--quiet',
        ...filters,
      ],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, ...env, [SWIFTSHADER_CHILD]: '1' },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    try {
      return (JSON.parse(readFileSync(reportFile, 'utf8')) as RuntimeReport[])[0]
    } catch {
      const reason = `Node/Dawn child exited ${child.status}: ${(child.stderr || child.stdout).slice(-2000)}`
      return {
        runtime: 'node',
        adapter: 'dawn/node (SwiftShader child)',
        results: [],
        logs: [reason],
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

function selectCases(dir: string, filters: readonly string[]): GoldenCase[] {
  return loadCases(dir).filter((c) => filters.length === 0 || filters.some((f) => c.id.includes(f)))
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  let dir = goldenDir()
  let runtime = 'all'
  let reportFile: string | undefined
  let verbose = false
  let quiet = false
  const filters: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    if (arg === '--dir') dir = path.resolve(args[++i])
    else if (arg === '--runtime') runtime = args[++i]
    else if (arg === '--report') reportFile = args[++i]
    else if (arg === '--verbose' || arg === '-v') verbose = true
    else if (arg === '--quiet') quiet = true
    else filters.push(arg)
  }
  let passed = 0
  let failed = 0
  let skipped = 0
  const reports: RuntimeReport[] = []
  try {
    const cases = selectCases(dir, filters)
    const count = suiteSize(cases)
    if (!quiet)
      console.log(`golden cases: ${dir} (${cases.length} cases, ${count} checks per runtime)`)
    if (runtime === 'chromium' || runtime === 'all') {
      const files = cases.filter((c) => appliesTo(c, 'f32')).map((c) => c.file)
      reports.push(await runInChromium(dir, files))
    }
    if (runtime === 'node' || runtime === 'all') reports.push(await runInNode(dir, filters))
    for (const report of reports) {
      const counts = printReport(report, count, quiet ? () => {} : console.log, verbose)
      passed += counts.passed
      failed += counts.failed
      skipped += counts.skipped
    }
  } catch (error) {
    failed++
    console.log(`FAIL ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
  }
  if (reportFile) writeFileSync(reportFile, JSON.stringify(reports))
  if (!quiet) {
    console.log('SwiftShader is a CPU rasteriser: these runs check correctness only, never speed.')
    console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`)
  }
  // Dawn keeps the process alive while its instance exists; exit explicitly.
  process.exit(failed === 0 ? 0 : 1)
}

if (process.argv[1] && path.resolve(process.argv[1]) === SELF) await main()
