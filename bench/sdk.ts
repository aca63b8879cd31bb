/**
 * @module bench/sdk
 * `npm run bench -- sdk`: `@piflow/sdk/local` in headless Chromium with onnxruntime-web WASM (the demo
 * page, files served from localhost), every ratio against a baseline measured in the same run.
 *
 * 1. Time to first image, cold: a fresh browser context (empty Cache API), so the model (manifest,
 *    tokenizer, student ONNX) and onnxruntime-web's wasm are downloaded, verified and compiled first.
 * 2. Warm 4-NFE generation on the loaded model (same page), with its stage timings.
 * 3. Baseline: the teacher's 50-step Euler sampling with classifier-free guidance (as the manifest says,
 *    both halves in one batch-2 run) on the same onnxruntime-web WASM build in the same page, cold
 *    (a fresh context: onnxruntime-web + teacher download, session, sampling) and warm.
 *
 * 4. Size: min+gzip bytes of each entry of the built package, with and without onnxruntime-web,
 *    against the root entry's 8 KB budget and `@piflow/sdk/local`'s 40 KB target (support/sdk-size.ts;
 *    needs no browser).
 *
 * Env: BENCH_RUNS (warm repetitions, default 5), BENCH_COLD_RUNS (default 3).
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { startStaticServer } from '../test/browser/support/static-server.ts'
import { browserUnavailable, launchChromium } from '../test/support/chromium.ts'
import { printSdkSizes } from './support/sdk-size.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 3)
const INPUT = { prompt: 'red apple', size: 32 }

execFileSync('npx', ['tsx', join(import.meta.dirname, '../sdk/build.ts')], { stdio: 'pipe' })
await printSdkSizes(join(import.meta.dirname, '../sdk/dist'))

const unavailable = browserUnavailable()
if (unavailable) {
  console.log(`sdk browser bench skipped: ${unavailable}`)
  process.exit(0)
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1))
const log = (line: string) => process.stderr.write(`[sdk bench] ${line}\n`)

interface Timed {
  wallMs: number
  backend: string
  timings: Record<string, number>
}

/** One generation through the demo page, timed inside the page. */
const generate = (page: Page, seed: number): Promise<Timed> =>
  page.evaluate(
    async ([input, seed]) => {
      type Generate = (path: string, input: unknown) => Promise<Omit<Timed, 'wallMs'>>
      const demo = (window as unknown as { piflowDemo: { generate: Generate } }).piflowDemo
      const started = performance.now()
      const result = await demo.generate('wasm', { ...input, seed })
      return {
        wallMs: performance.now() - started,
        backend: result.backend,
        timings: result.timings,
      }
    },
    [INPUT, seed] as const,
  )

/** The teacher baseline (bench/sdk-teacher.js) in the page: [cold ms, ...warm ms]. */
const teacherRuns = (page: Page, warmRuns: number): Promise<number[]> =>
  page.evaluate(async (warmRuns) => {
    const url = '/bench/sdk-teacher.js'
    const { teacherRuns } = await import(url)
    return teacherRuns(warmRuns)
  }, warmRuns)

/** A demo page in a fresh browser context (empty Cache API: a first visit). */
const freshPage = async () => {
  const context = await browser.newContext()
  const page = await context.newPage()
  await page.goto(`${server.url}/demo/index.html`)
  await page.waitForFunction(
    () => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready,
  )
  return { page, close: () => context.close() }
}

const server = await startStaticServer()
const browser = await launchChromium()
try {
  const studentCold: number[] = []
  const teacherCold: number[] = []
  let servedBytes = 0
  for (let i = 0; i < COLD_RUNS; i++) {
    server.resetCounts()
    const student = await freshPage()
    const run = await generate(student.page, 1000 + i)
    if (run.backend !== 'wasm') throw new Error(`expected the wasm path, got ${run.backend}`)
    // The SDK's own totalMs: from the generate call to the PNG, downloads included, display excluded.
    studentCold.push(run.timings.totalMs ?? run.wallMs)
    servedBytes = [...server.served.values()].reduce((a, b) => a + b, 0)
    await student.close()
    const teacher = await freshPage()
    teacherCold.push((await teacherRuns(teacher.page, 0))[0]!)
    await teacher.close()
    log(
      `cold ${i + 1}/${COLD_RUNS}: student ${ms(studentCold.at(-1)!)} ms, teacher ${ms(teacherCold.at(-1)!)} ms`,
    )
  }

  const { page, close } = await freshPage()
  await generate(page, 1) // download, session, warm-up
  const warm: Timed[] = []
  for (let i = 0; i < RUNS; i++) warm.push(await generate(page, 2 + i))
  const [, ...teacherWarm] = await teacherRuns(page, RUNS)
  await close()

  const coldStudent = median(studentCold)
  const coldTeacher = median(teacherCold)
  const stage = (name: string) => median(warm.map((t) => t.timings[name] ?? 0))
  const warmStudent = stage('totalMs')
  const warmTeacher = median(teacherWarm)
  console.log(
    `\n## @piflow/sdk/local, headless Chromium ${browser.version()}, onnxruntime-web WASM (1 thread), 32×32\n`,
  )
  console.log('| measurement | 4-NFE student (SDK) | teacher, 50 steps + CFG | teacher / student |')
  console.log('|---|---|---|---|')
  console.log(
    `| time to first image, cold: fresh context, files from localhost, median of ${COLD_RUNS} | ${ms(coldStudent)} ms (${(servedBytes / 2 ** 20).toFixed(1)} MiB) | ${ms(coldTeacher)} ms | ${(coldTeacher / coldStudent).toFixed(1)}× |`,
  )
  console.log(
    `| warm generation, median of ${RUNS} | ${ms(warmStudent)} ms | ${ms(warmTeacher)} ms | ${(warmTeacher / warmStudent).toFixed(1)}× |`,
  )
  console.log(
    `| student warm stages: forward ${ms(stage('forwardMs'))} ms, policy integration (CPU) ${ms(stage('integrateMs'))} ms, PNG ${ms(stage('encodeMs'))} ms; page wall incl. decode + display ${ms(median(warm.map((t) => t.wallMs)))} ms | | | |`,
  )
} finally {
  await browser.close()
  await server.close()
}
