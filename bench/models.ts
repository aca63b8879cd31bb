/**
 * @module bench/models
 * `npm run bench -- models`: wall time per 32×32 image of the shipped piflow-emoji model in
 * onnxruntime-node (CPU), all measured in this run:
 * - π-Flow GM student, 4 NFE (4 ONNX forwards + the @piflow/policy CPU rollout, Float32Array);
 * - the teacher, 50 Euler steps with CFG (batch of 2 per step: prompt + empty prompt) — the baseline;
 * - the teacher, 4 Euler steps with CFG.
 * Also the student's single forward (batch 1). Env: BENCH_REPEATS (default 5); median reported.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createTokenizer, nfeSettings, parseManifest, tokenize } from '@piflow/models'
import { buildSchedule, type GmOutput, randn, sample, warp } from '@piflow/policy'
import * as ort from 'onnxruntime-node'

const dir = fileURLToPath(new URL('../models/piflow-emoji/', import.meta.url))
const manifest = parseManifest(JSON.parse(readFileSync(`${dir}manifest.json`, 'utf8')))
const tokenizer = createTokenizer(JSON.parse(readFileSync(`${dir}tokenizer.json`, 'utf8')))
const repeats = Number(process.env.BENCH_REPEATS ?? 5)
const { channels: c, height: h, width: w } = manifest.latent
const per = c * h * w
const k = manifest.policy.type === 'gm' ? manifest.policy.k : 0
const settings = nfeSettings(manifest)
const guidance = manifest.teacher?.guidance ?? manifest.guidance.default
const shift = manifest.teacher?.shift ?? settings.shift

const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 }
const student = await ort.InferenceSession.create(`${dir}${manifest.files.student.path}`, opts)
const teacher = await ort.InferenceSession.create(
  `${dir}${manifest.files[manifest.teacher?.onnx ?? 'teacher'].path}`,
  opts,
)
const prompt = tokenize(tokenizer, 'grinning face')
const pair = tokenize(tokenizer, ['grinning face', ''])

function noise(seed: number): Float32Array {
  return randn(new Float32Array(per), seed)
}

async function studentForward(x: Float32Array, sigma: number): Promise<GmOutput<Float32Array>> {
  const out = await student.run({
    x: new ort.Tensor('float32', x.slice(), [1, c, h, w]),
    sigma: new ort.Tensor('float32', Float32Array.of(sigma), [1]),
    tokens: new ort.Tensor('int64', prompt, [1, tokenizer.maxLength]),
  })
  return {
    type: 'gm',
    k,
    meansU: out.means_u.data as Float32Array,
    logweights: out.logweights.data as Float32Array,
    logstds: out.logstds.data as Float32Array,
  }
}

async function studentSample(seed: number): Promise<void> {
  await sample<Float32Array>({
    xInit: noise(seed),
    shape: { batch: 1, channels: c, height: h, width: w },
    schedule: buildSchedule({
      nfe: manifest.sampling.defaultNfe,
      shift: settings.shift,
      finalStepSizeScale: settings.finalStepSizeScale,
      totalSubsteps: settings.totalSubsteps,
    }),
    eps: manifest.sampling.eps,
    temperature: settings.temperature,
    forward: studentForward,
  })
}

async function teacherEuler(seed: number, steps: number): Promise<void> {
  const x = noise(seed)
  const both = new Float32Array(2 * per)
  for (let i = 0; i < steps; i++) {
    const s0 = warp(1 - i / steps, shift)
    const s1 = warp(1 - (i + 1) / steps, shift)
    both.set(x, 0)
    both.set(x, per)
    const out = await teacher.run({
      x: new ort.Tensor('float32', both, [2, c, h, w]),
      sigma: new ort.Tensor('float32', Float32Array.of(s0, s0), [2]),
      tokens: new ort.Tensor('int64', pair, [2, tokenizer.maxLength]),
    })
    const u = out.u.data as Float32Array
    for (let j = 0; j < per; j++) {
      const guided = u[per + j] + guidance * (u[j] - u[per + j])
      x[j] += guided * (s1 - s0)
    }
  }
}

async function median(run: (rep: number) => Promise<void>): Promise<number> {
  await run(-1) // warm-up
  const times: number[] = []
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now()
    await run(r)
    times.push(performance.now() - t0)
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]
}

const forwardMs = await median(async () => {
  await studentForward(noise(1), 0.5)
})
const rows: [string, number][] = [
  ['teacher, 50 Euler steps + CFG (baseline)', await median((r) => teacherEuler(100 + r, 50))],
  ['teacher, 4 Euler steps + CFG', await median((r) => teacherEuler(100 + r, 4))],
  [
    `π-Flow GM student, ${manifest.sampling.defaultNfe} NFE (ORT + CPU policy)`,
    await median((r) => studentSample(100 + r)),
  ],
]
console.log(`piflow-emoji on onnxruntime-node CPU, 1 intra-op thread, median of ${repeats}`)
console.log(`student forward (batch 1): ${forwardMs.toFixed(2)} ms\n`)
console.log('| path | ms / image | speed-up vs teacher-50 |\n|---|---|---|')
for (const [name, ms] of rows) {
  console.log(`| ${name} | ${ms.toFixed(1)} | ${(rows[0][1] / ms).toFixed(1)}× |`)
}
await student.release()
await teacher.release()
