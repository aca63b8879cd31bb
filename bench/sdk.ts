/**
 * @module bench/sdk
 * `npm run bench -- sdk`: `@piflow/sdk/local` in headless Chromium with onnxruntime-web WASM (the demo
 * page, files served from localhost), every ratio against a baseline measured in the same run.
 *
 * For each model — the shipped `models/piflow-emoji`, and the model directory `BENCH_MODEL_DIR` when
 * set (e.g. a v2 export; mounted as `/models/<its id>/`), so the two are compared side by side:
 *
 * 1. Time to first image, cold: a fresh browser context (empty Cache API), so the model (manifest,
 *    tokenizer, student ONNX) and onnxruntime-web's wasm are downloaded, verified and compiled first;
 *    split into stages by the SDK's load progress (download + verify + cache, session create) and its
 *    result timings (forward, policy integration, PNG).
 * 2. Warm default-NFE generation on the loaded model (same page) at the native size, with its stage
 *    timings; then the PNG stage at every other output size of the manifest (the upscale + encode).
 * 3. Baseline: the model's teacher, 50-step Euler sampling with classifier-free guidance (as the manifest
 *    says, both halves in one batch-2 run) on the same onnxruntime-web WASM build in the same page, cold
 *    (a fresh context: onnxruntime-web + teacher download, session, sampling) and warm.
 *
 * 4. Size: min+gzip bytes of each entry of the built package, with and without onnxruntime-web,
 *    against the root entry's 8 KB budget and `@piflow/sdk/local`'s 40 KB target (support/sdk-size.ts;
 *    needs no browser).
 *
 * Env: BENCH_MODEL_DIR (a second model directory), BENCH_RUNS (warm repetitions, default 5),
 * BENCH_COLD_RUNS (default 3), BENCH_TEACHER=0 (skip the teacher baseline), BENCH_SESSION=1 (also
 * compare onnxruntime-web session options per student, see printSessionVariants), BENCH_THREADS=N (serve the
 * pages cross-origin isolated and measure every model with 1 and with N onnxruntime-web WASM threads,
 * in fresh pages: the runtime's thread count is fixed per page).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { sessionOptions } from '../sdk/src/local/ort.ts'
import { startStaticServer } from '../test/browser/support/static-server.ts'
import { browserUnavailable, launchChromium } from '../test/support/chromium.ts'
import { printSdkSizes } from './support/sdk-size.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 3)
const TEACHER = process.env.BENCH_TEACHER !== '0'
const SESSION = process.env.BENCH_SESSION === '1'
const THREADS = Number(process.env.BENCH_THREADS ?? 1)
/** 1 thread always; with BENCH_THREADS > 1 that many too, on the same (isolated) server, same run. */
const THREAD_COUNTS = THREADS > 1 ? [1, THREADS] : [1]
const PROMPT = 'red apple'

interface BenchModel {
  id: string
  /** the directory served as /models/<id>/ (undefined: the repository's models/) */
  dir: string | undefined
  nativeSize: number
  outputSizes: number[]
  nfe: number
  /** the student inputs' symbolic batch dimension(s), for freeDimensionOverrides */
  batchDims: Record<string, number>
}

const modelAt = (dir: string, mounted: boolean): BenchModel => {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))
  return {
    id: manifest.id,
    dir: mounted ? dir : undefined,
    nativeSize: manifest.image.height,
    outputSizes: manifest.image.outputSizes,
    nfe: manifest.sampling.defaultNfe,
    batchDims: Object.fromEntries(
      manifest.files[manifest.sampling.perNfe[manifest.sampling.defaultNfe].onnx].inputs
        .map((input: { shape: (string | number)[] }) => input.shape[0])
        .filter((dim: unknown) => typeof dim === 'string')
        .map((dim: string) => [dim, 1]),
    ),
  }
}
const models = [modelAt(join(import.meta.dirname, '../models/piflow-emoji'), false)]
if (process.env.BENCH_MODEL_DIR) models.push(modelAt(resolve(process.env.BENCH_MODEL_DIR), true))

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
const ratio = (a: number, b: number) => (Number.isNaN(a / b) ? '—' : `${(a / b).toFixed(2)}×`)
const log = (line: string) => process.stderr.write(`[sdk bench] ${line}\n`)

/** One generation's times, measured inside the page. */
interface Timed {
  wallMs: number
  backend: string
  /** the SDK's result timings: loadMs, forwardMs, integrateMs, encodeMs, totalMs */
  timings: Record<string, number>
  /** from the call to the SDK's `compile` load stage (downloads + sha256 + Cache API put) */
  downloadMs: number | undefined
  /** from `compile` to `ready` (ORT session create + the integrator) */
  sessionMs: number | undefined
}

/** One generation through the demo page, timed inside the page. */
const generate = (
  page: Page,
  model: BenchModel,
  threads: number,
  seed: number,
  size: number,
): Promise<Timed> =>
  page.evaluate(
    async ([input, threads]) => {
      type Generate = (path: string, input: unknown, local?: unknown) => Promise<Timed>
      type Progress = { stage: string; at: number }
      const demo = (
        window as unknown as {
          piflowDemo: { generate: Generate; loadProgress: Progress[] }
        }
      ).piflowDemo
      const before = demo.loadProgress.length
      const started = performance.now()
      const result = await demo.generate('wasm', input, { numThreads: threads })
      const wallMs = performance.now() - started
      // No named functions in here: tsx's __name helper does not exist in the page.
      const events = demo.loadProgress.slice(before)
      const compile = events.find((e) => e.stage === 'compile')?.at
      const ready = events.find((e) => e.stage === 'ready')?.at
      return {
        wallMs,
        backend: result.backend,
        timings: result.timings,
        downloadMs: compile === undefined ? undefined : compile - started,
        sessionMs: compile === undefined || ready === undefined ? undefined : ready - compile,
      }
    },
    [{ model: model.id, prompt: PROMPT, seed, size }, threads] as const,
  )

/** The teacher baseline (bench/sdk-teacher.js) in the page: [cold ms, ...warm ms]. */
const teacherRuns = (
  page: Page,
  model: BenchModel,
  threads: number,
  warmRuns: number,
): Promise<number[]> =>
  page.evaluate(
    async ([id, warmRuns, threads]) => {
      const url = '/bench/sdk-teacher.js'
      const { teacherRuns } = await import(url)
      return teacherRuns(id, warmRuns, threads)
    },
    [model.id, warmRuns, threads] as const,
  )

const modelDirs = Object.fromEntries(models.flatMap((m) => (m.dir ? [[m.id, m.dir]] : [])))
const server = await startStaticServer({ modelDirs, crossOriginIsolated: THREADS > 1 })
const browser = await launchChromium()

/** A demo page in a fresh browser context (empty Cache API: a first visit). */
const freshPage = async () => {
  const context = await browser.newContext()
  const page = await context.newPage()
  await page.goto(`${server.url}/demo/index.html`)
  await page.waitForFunction(
    () => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready,
  )
  if (THREADS > 1 && !(await page.evaluate(() => crossOriginIsolated))) {
    throw new Error('BENCH_THREADS > 1 but the page is not crossOriginIsolated')
  }
  return { page, close: () => context.close() }
}

interface ModelResult {
  model: BenchModel
  threads: number
  cold: Timed[]
  servedBytes: number
  warm: Timed[]
  /** size → median PNG stage (upscale + encode) of warm runs at that size */
  encodeAt: Map<number, number>
  teacherCold: number | undefined
  teacherWarm: number | undefined
}

const measure = async (model: BenchModel, threads: number): Promise<ModelResult> => {
  const cold: Timed[] = []
  const teacherCold: number[] = []
  let servedBytes = 0
  for (let i = 0; i < COLD_RUNS; i++) {
    server.resetCounts()
    const student = await freshPage()
    const run = await generate(student.page, model, threads, 1000 + i, model.nativeSize)
    if (run.backend !== 'wasm') throw new Error(`expected the wasm path, got ${run.backend}`)
    cold.push(run)
    servedBytes = [...server.served.values()].reduce((a, b) => a + b, 0)
    await student.close()
    let teacherNote = ''
    if (TEACHER) {
      const teacher = await freshPage()
      teacherCold.push((await teacherRuns(teacher.page, model, threads, 0))[0]!)
      await teacher.close()
      teacherNote = `, teacher ${ms(teacherCold.at(-1)!)} ms`
    }
    log(
      `${model.id} (${threads} thread) cold ${i + 1}/${COLD_RUNS}: student ${ms(run.timings.totalMs!)} ms${teacherNote}`,
    )
  }

  const { page, close } = await freshPage()
  await generate(page, model, threads, 1, model.nativeSize) // download, session, warm-up
  const warm: Timed[] = []
  for (let i = 0; i < RUNS; i++) {
    warm.push(await generate(page, model, threads, 2 + i, model.nativeSize))
  }
  const encodeAt = new Map<number, number>()
  for (const size of model.outputSizes) {
    if (size === model.nativeSize) continue
    const runs: number[] = []
    for (let i = 0; i < Math.min(RUNS, 3); i++) {
      runs.push((await generate(page, model, threads, 100 + i, size)).timings.encodeMs!)
    }
    encodeAt.set(size, median(runs))
  }
  const teacherWarm = TEACHER ? (await teacherRuns(page, model, threads, RUNS)).slice(1) : []
  await close()
  log(`${model.id} (${threads} thread) warm: ${ms(median(warm.map((t) => t.timings.totalMs!)))} ms`)
  return {
    model,
    threads,
    cold,
    servedBytes,
    warm,
    encodeAt,
    teacherCold: TEACHER ? median(teacherCold) : undefined,
    teacherWarm: TEACHER ? median(teacherWarm) : undefined,
  }
}

/** Median of one field over runs. */
const med = (runs: Timed[], pick: (t: Timed) => number | undefined) =>
  median(runs.map((t) => pick(t) ?? Number.NaN))

/**
 * BENCH_SESSION=1: onnxruntime-web session options for each model's student, in one page (bench/
 * sdk-session.js): creation time (the page's first creation apart: it also warms the runtime's code)
 * and forward time, every variant against the SDK's own choice (`sessionOptions` of sdk/src/local/ort.ts).
 */
const printSessionVariants = async (model: BenchModel) => {
  const sdk = sessionOptions('wasm', model.batchDims)
  const fixed = { freeDimensionOverrides: model.batchDims }
  const variants: Record<string, object> = {
    'SDK: basic, batch fixed': sdk,
    "all, dynamic batch (the SDK's before)": { graphOptimizationLevel: 'all' },
    'all, batch fixed': { graphOptimizationLevel: 'all', ...fixed },
    'extended, batch fixed': { graphOptimizationLevel: 'extended', ...fixed },
    'disabled, batch fixed': { graphOptimizationLevel: 'disabled', ...fixed },
    "SDK's + executionMode parallel": { ...sdk, executionMode: 'parallel' },
    "SDK's + enableMemPattern false": { ...sdk, enableMemPattern: false },
  }
  const rounds = 5
  const { page, close } = await freshPage()
  const result: Record<string, { create: number[]; runs: number[] }> = await page.evaluate(
    async ([id, variants, rounds, runs]) => {
      const url = '/bench/sdk-session.js'
      const { sessionVariants } = await import(url)
      return sessionVariants(id, variants, rounds, runs)
    },
    [model.id, variants, rounds, RUNS * 2] as const,
  )
  await close()
  const ours = result['SDK: basic, batch fixed']!
  const later = (r: { create: number[] }) => median(r.create.slice(1))
  console.log(
    `\n### ${model.id}: session options, one page, ${rounds} interleaved rounds, ${RUNS * 2} forwards each\n`,
  )
  console.log(
    '| session options | creation, round 1 (the first row: with the runtime start) | creation, rounds 2+ (median) | forward, fastest | forward, median | vs SDK: creation / forward |',
  )
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const [label, r] of Object.entries(result)) {
    console.log(
      `| ${label} | ${r.create[0] === undefined ? '—' : `${ms(r.create[0])} ms`} | ${ms(later(r))} ms | ${ms(Math.min(...r.runs))} ms | ${ms(median(r.runs))} ms | ${ratio(later(r), later(ours))} / ${ratio(median(r.runs), median(ours.runs))} |`,
    )
  }
}

/** The table of one thread count: the models side by side, the last against the first. */
const printTable = (results: ModelResult[]) => {
  const threads = results[0]!.threads
  const isolated = THREAD_COUNTS.length > 1 ? ', cross-origin isolated page' : ''
  console.log(
    `\n## @piflow/sdk/local, headless Chromium ${browser.version()}, onnxruntime-web WASM, ${threads} thread(s)${isolated}\n`,
  )
  const head = results.map((r) => `${r.model.id} (${r.model.nativeSize}², ${r.model.nfe} NFE)`)
  const base = results[0]!
  const versus = results.length > 1 ? ` ${results.at(-1)!.model.id} / ${base.model.id} |` : ''
  console.log(`| median | ${head.join(' | ')} |${versus}`)
  console.log(`|---|${results.map(() => '---:|').join('')}${versus ? '---:|' : ''}`)
  const row = (label: string, values: number[], unit = ' ms') => {
    const cells = values.map((v) => (Number.isNaN(v) ? '—' : `${ms(v)}${unit}`))
    const r = results.length > 1 ? ` ${ratio(values.at(-1)!, values[0]!)} |` : ''
    console.log(`| ${label} | ${cells.join(' | ')} |${r}`)
  }
  row(
    'served to a cold page (MiB)',
    results.map((r) => r.servedBytes / 2 ** 20),
    '',
  )
  row(
    `**cold, to first image** (fresh context, localhost, of ${COLD_RUNS})`,
    results.map((r) => med(r.cold, (t) => t.timings.totalMs)),
  )
  row(
    '  cold: downloads + sha256 + cache (to `compile`)',
    results.map((r) => med(r.cold, (t) => t.downloadMs)),
  )
  row(
    '  cold: ORT session create (`compile` → `ready`)',
    results.map((r) => med(r.cold, (t) => t.sessionMs)),
  )
  row(
    '  cold: first generation (forward + policy + PNG)',
    results.map((r) => med(r.cold, (t) => t.timings.totalMs! - t.timings.loadMs!)),
  )
  row(
    `**warm generation** (of ${RUNS}, native size)`,
    results.map((r) => med(r.warm, (t) => t.timings.totalMs)),
  )
  // The fastest run too: on a shared machine the median carries other jobs' load.
  row(
    '  warm generation, fastest run',
    results.map((r) => Math.min(...r.warm.map((t) => t.timings.totalMs!))),
  )
  row(
    '  warm: forward per NFE, fastest run',
    results.map((r) => Math.min(...r.warm.map((t) => t.timings.forwardMs! / r.model.nfe))),
  )
  row(
    '  warm: forward per NFE',
    results.map((r) => med(r.warm, (t) => t.timings.forwardMs! / r.model.nfe)),
  )
  row(
    '  warm: policy integration (CPU), all NFEs',
    results.map((r) => med(r.warm, (t) => t.timings.integrateMs)),
  )
  row(
    '  warm: PNG, native size',
    results.map((r) => med(r.warm, (t) => t.timings.encodeMs)),
  )
  for (const size of [...new Set(results.flatMap((r) => [...r.encodeAt.keys()]))].sort(
    (a, b) => a - b,
  )) {
    row(
      `  warm: upscale + PNG at ${size}²`,
      results.map((r) => r.encodeAt.get(size) ?? Number.NaN),
    )
  }
  row(
    '  page wall incl. PNG decode + display',
    results.map((r) => med(r.warm, (t) => t.wallMs)),
  )
  if (TEACHER) {
    row(
      'teacher 50 steps + CFG, cold',
      results.map((r) => r.teacherCold!),
    )
    row(
      'teacher 50 steps + CFG, warm',
      results.map((r) => r.teacherWarm!),
    )
    console.log(
      `\nstudent vs teacher: ${results
        .map(
          (r) =>
            `${r.model.id} cold ${ratio(
              r.teacherCold!,
              med(r.cold, (t) => t.timings.totalMs),
            )}, warm ${ratio(
              r.teacherWarm!,
              med(r.warm, (t) => t.timings.totalMs),
            )}`,
        )
        .join('; ')}`,
    )
  }
}

try {
  const all: ModelResult[] = []
  for (const model of models)
    for (const threads of THREAD_COUNTS) all.push(await measure(model, threads))
  for (const threads of THREAD_COUNTS) printTable(all.filter((r) => r.threads === threads))
  if (SESSION) for (const model of models) await printSessionVariants(model)
  if (THREAD_COUNTS.length > 1) {
    const n = THREAD_COUNTS.at(-1)!
    console.log(`\n${n} threads / 1 thread (medians, same run):\n`)
    console.log('| model | cold | warm | forward per NFE | policy |')
    console.log('|---|---:|---:|---:|---:|')
    for (const model of models) {
      const [one, many] = THREAD_COUNTS.map((t) =>
        all.find((r) => r.model === model && r.threads === t),
      ) as [ModelResult, ModelResult]
      const of = (r: ModelResult, pick: (t: Timed) => number | undefined) => med(r.warm, pick)
      console.log(
        `| ${model.id} | ${ratio(
          med(many.cold, (t) => t.timings.totalMs),
          med(one.cold, (t) => t.timings.totalMs),
        )} | ${ratio(
          of(many, (t) => t.timings.totalMs),
          of(one, (t) => t.timings.totalMs),
        )} | ${ratio(
          of(many, (t) => t.timings.forwardMs),
          of(one, (t) => t.timings.forwardMs),
        )} | ${ratio(
          of(many, (t) => t.timings.integrateMs),
          of(one, (t) => t.timings.integrateMs),
        )} |`,
      )
    }
  }
} finally {
  await browser.close()
  await server.close()
}
