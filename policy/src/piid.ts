/**
 * @module piid
 * π-ID training bookkeeping (fixtures/golden/README.md §3 `train_sample_t` and `piid_segment`): which NFE segment a
 * raw-time draw trains, and one segment of imitation distillation — roll out the detached student
 * policy, query the teacher at the visited states, compare with the policy's own (windowed) velocity.
 * No network and no backprop here: the teacher is a callback, the loss is a number.
 */
import { PolicyOptionError, PolicyShapeError } from './errors.ts'
import { createGmPolicy, GM_DEFAULT_EPS } from './gm.ts'
import { rolloutPerSample } from './rollout.ts'
import { warp } from './shift.ts'
import type { FloatArray, GmOutput, LatentShape } from './types.ts'
import {
  allocLike,
  checkInt,
  checkNumber,
  checkShape,
  checkSigma,
  checkTensor,
  roundHalfEven,
} from './validate.ts'

/** Options of {@link trainSampleT}. */
export interface TrainSampleTOptions {
  nfe: number
  /** @default 1 */
  finalStepSizeScale?: number
  shift: number
  /** @default 1e-4 */
  eps?: number
}

/** Segment chosen for each raw-time draw. */
export interface TrainSampleTResult {
  /** 1 … nfe (1 = the last, shortened segment) */
  segmentIndex: Int32Array
  rawTSrc: Float64Array
  sigmaTSrc: Float64Array
  segmentSize: Float64Array
}

/**
 * Maps uniform raw-time draws to the π-ID segment each one trains.
 * @example trainSampleT([0.7], { nfe: 4, finalStepSizeScale: 0.5, shift: 3.2 }).segmentIndex // [3]
 */
export function trainSampleT(
  rawTDraws: ArrayLike<number>,
  options: TrainSampleTOptions,
): TrainSampleTResult {
  const nfe = checkInt('nfe', options.nfe, 1, 10_000)
  const fs = checkNumber('finalStepSizeScale', options.finalStepSizeScale ?? 1, 0, 1e6, true)
  const shift = checkNumber('shift', options.shift, 0, Number.POSITIVE_INFINITY, true)
  const eps = checkNumber('eps', options.eps ?? 1e-4, 0, 1)
  const M = rawTDraws.length
  const base = 1 / (nfe - 1 + fs)
  const out: TrainSampleTResult = {
    segmentIndex: new Int32Array(M),
    rawTSrc: new Float64Array(M),
    sigmaTSrc: new Float64Array(M),
    segmentSize: new Float64Array(M),
  }
  for (let i = 0; i < M; i++) {
    const tau = Math.max(checkSigma(`rawTDraws[${i}]`, rawTDraws[i]), eps)
    const index = Math.min(Math.max(Math.ceil(tau / base + 1 - fs), 1), nfe)
    const raw = Math.min(Math.max((index - (1 - fs)) * base, eps), 1)
    out.segmentIndex[i] = index
    out.rawTSrc[i] = raw
    out.sigmaTSrc[i] = warp(raw, shift)
    out.segmentSize[i] = index === 1 ? fs * base : base
  }
  return out
}

/** The frozen teacher: velocity u at (x, σ per sample), same layout as x. */
export type Teacher<T extends FloatArray> = (
  x: T,
  sigma: Float64Array,
  signal?: AbortSignal,
) => T | Promise<T>

/** Inputs of one π-ID segment. */
export interface PiidSegmentOptions<T extends FloatArray> {
  /** the student's GM output at (xSrc, sigmaSrc) */
  output: GmOutput<T>
  xSrc: T
  shape: LatentShape
  rawSrc: number
  sigmaSrc: number
  /** L, in raw time */
  segmentSize: number
  shift: number
  /** r: share of the segment covered by teacher steps */
  teacherRatio: number
  /** M */
  numIntermediateStates: number
  windowSubsteps: number
  totalSubsteps: number
  /** @default 1e-4 */
  eps?: number
  /** eps of the GM policy. @default 1e-4 */
  policyEps?: number
  /** @default 1 */
  lossScale?: number
  /** uniform draws (B, M) */
  studentDraws: ArrayLike<number>
  /** uniform draws (B, M − 1) */
  teacherDraws: ArrayLike<number>
  /** (B, K) GM dropout of the rollout policy π̄, true = drop */
  dropoutMask?: ArrayLike<boolean>
  /** also roll π̄ on to rawSrc − L (data-free chaining) */
  getXTDst?: boolean
  teacher: Teacher<T>
  signal?: AbortSignal
}

/** Everything one π-ID segment computes (shapes as in golden `piid_segment`). */
export interface PiidSegmentResult<T extends FloatArray> {
  windowSize: number
  /** (B, M) */
  studentIntervals: Float64Array
  /** (B, M) */
  teacherIntervals: Float64Array
  /** (M, B) */
  rawA: Float64Array
  rawB: Float64Array
  sigmaA: Float64Array
  /** (M, B, C, H, W) */
  xA: T
  tgtU: T
  predU: T
  /** (M, B), 1 = the prediction used the local velocity */
  localOnly: Uint8Array
  loss: number
  dropoutMaskEffective: Uint8Array | null
  /** (B, C, H, W) when getXTDst */
  xTDst?: T
}

/**
 * Runs one π-ID segment (fixtures/golden/README.md §3 `piid_segment`, steps 1–6).
 * @throws {PolicyError} on inconsistent shapes or options
 */
export async function piidSegment<T extends FloatArray>(
  options: PiidSegmentOptions<T>,
): Promise<PiidSegmentResult<T>> {
  const { output, xSrc, shape, teacher, signal } = options
  const size = checkShape(shape)
  const B = shape.batch
  checkTensor('xSrc', xSrc, size, '(B,C,H,W)')
  const rawSrc = checkSigma('rawSrc', options.rawSrc)
  const sigmaSrc = checkSigma('sigmaSrc', options.sigmaSrc)
  const L = checkNumber('segmentSize', options.segmentSize, 0, 1, true)
  const shift = checkNumber('shift', options.shift, 0, Number.POSITIVE_INFINITY, true)
  const r = checkNumber('teacherRatio', options.teacherRatio, 0, 1)
  const M = checkInt('numIntermediateStates', options.numIntermediateStates, 1, 1_000_000)
  const windowSubsteps = checkNumber('windowSubsteps', options.windowSubsteps, 0)
  const total = checkNumber('totalSubsteps', options.totalSubsteps, 1, 1e6)
  const eps = checkNumber('eps', options.eps ?? 1e-4, 0, 1)
  const policyEps = checkNumber('policyEps', options.policyEps ?? GM_DEFAULT_EPS, 0, 1, true)
  const lossScale = checkNumber('lossScale', options.lossScale ?? 1)
  if (typeof teacher !== 'function') throw new PolicyOptionError('teacher must be a function')
  checkDraws('studentDraws', options.studentDraws, B * M)
  checkDraws('teacherDraws', options.teacherDraws, B * (M - 1))

  // 1. π at (x_src, σ_src); π̄ = π with the dropout mask, used for the rollouts.
  const sigmaSrcs = new Float64Array(B).fill(sigmaSrc)
  const pi = createGmPolicy(output, xSrc, sigmaSrcs, shape, { eps: policyEps })
  const piBar = options.dropoutMask
    ? createGmPolicy(output, xSrc, sigmaSrcs, shape, {
        eps: policyEps,
        dropoutMask: options.dropoutMask,
      })
    : pi

  // 2. window
  const nL = Math.max(roundHalfEven(L * total), 1)
  const windowSize = Math.min((windowSubsteps * L) / nL, L)

  // 3. gaps
  const studentIntervals = new Float64Array(B * M)
  const teacherIntervals = new Float64Array(B * M)
  const row = new Float64Array(M + 1)
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < M; i++)
      row[i] = options.studentDraws[b * M + i] * (1 - r) * (L - windowSize)
    const sorted = row.subarray(0, M).sort()
    for (let i = 0; i < M; i++)
      studentIntervals[b * M + i] = sorted[i] - (i > 0 ? sorted[i - 1] : 0)
    for (let i = 0; i < M - 1; i++) row[i] = options.teacherDraws[b * (M - 1) + i]
    const tSorted = row.subarray(0, M - 1).sort()
    for (let i = 0; i < M; i++) {
      const hi = i < M - 1 ? tSorted[i] : 1
      const lo = i > 0 ? tSorted[i - 1] : 0
      teacherIntervals[b * M + i] = (hi - lo) * (r * (L - windowSize))
    }
  }

  // 4. intermediate states
  const rawA = new Float64Array(M * B)
  const rawB = new Float64Array(M * B)
  const sigmaA = new Float64Array(M * B)
  const xA = allocLike(xSrc, M * size)
  const tgtU = allocLike(xSrc, M * size)
  const predU = allocLike(xSrc, M * size)
  const localOnly = new Uint8Array(M * B)
  const xLast = xSrc.slice() as T
  const tauLast = new Float64Array(B).fill(rawSrc)
  const sigmaLast = new Float64Array(B).fill(sigmaSrc)
  const tauA = new Float64Array(B)
  const tauB = new Float64Array(B)
  const tauEnd = new Float64Array(B)
  const xEnd = allocLike(xSrc, size)
  const uLocal = allocLike(xSrc, size)
  const perSample = size / B
  for (let i = 0; i < M; i++) {
    signal?.throwIfAborted()
    for (let b = 0; b < B; b++) {
      tauA[b] = Math.max(tauLast[b] - studentIntervals[b * M + i], 0)
      tauB[b] = Math.max(tauA[b] - teacherIntervals[b * M + i], 0)
      tauEnd[b] = tauB[b] - windowSize
    }
    const x = xA.subarray(i * size, (i + 1) * size) as T
    x.set(xLast)
    const reached = rolloutPerSample(piBar, x, {
      rawSrc: tauLast,
      rawDst: tauA,
      sigmaSrc: sigmaLast,
      shift,
      totalSubsteps: total,
    })
    const sA = reached.sigmaFinal
    const tgt = await teacher(x, sA.slice(), signal)
    checkTensor('teacher output', tgt, size, '(B,C,H,W)')
    tgtU.set(tgt, i * size)

    // pred_u: local velocity, or the average velocity over the window-extended teacher span
    let anyRollout = false
    for (let b = 0; b < B; b++) {
      const local = roundHalfEven((tauA[b] - tauEnd[b]) * total) < 2
      localOnly[i * B + b] = local ? 1 : 0
      if (!local) anyRollout = true
    }
    const pred = predU.subarray(i * size, (i + 1) * size)
    pi.velocity(uLocal, x, sA)
    pred.set(uLocal)
    if (anyRollout) {
      xEnd.set(x)
      const end = rolloutPerSample(pi, xEnd, {
        rawSrc: tauA,
        rawDst: tauEnd,
        sigmaSrc: sA,
        shift,
        totalSubsteps: total,
      })
      for (let b = 0; b < B; b++) {
        if (localOnly[i * B + b]) continue
        const inv = 1 / Math.max(sA[b] - end.sigmaFinal[b], eps)
        for (let j = b * perSample; j < (b + 1) * perSample; j++) pred[j] = (x[j] - xEnd[j]) * inv
      }
    }

    // teacher step to τ_b: x_b = x_a + tgt_u·(warp(τ_b) − σ_a)
    for (let b = 0; b < B; b++) {
      const sB = warp(tauB[b], shift)
      const ds = sB - sA[b]
      for (let j = b * perSample; j < (b + 1) * perSample; j++) xLast[j] = x[j] + tgt[j] * ds
      rawA[i * B + b] = tauA[b]
      rawB[i * B + b] = tauB[b]
      sigmaA[i * B + b] = sA[b]
      tauLast[b] = tauB[b]
      sigmaLast[b] = sB
    }
  }

  // 5. loss
  let sum = 0
  for (let j = 0; j < M * size; j++) {
    const d = predU[j] - tgtU[j]
    sum += d * d
  }
  const loss = lossScale * 0.5 * (sum / (M * size))

  const result: PiidSegmentResult<T> = {
    windowSize,
    studentIntervals,
    teacherIntervals,
    rawA,
    rawB,
    sigmaA,
    xA,
    tgtU,
    predU,
    localOnly,
    loss,
    dropoutMaskEffective: piBar.dropoutMaskEffective,
  }
  // 6. data-free chaining
  if (options.getXTDst) {
    rolloutPerSample(piBar, xLast, {
      rawSrc: tauLast,
      rawDst: new Float64Array(B).fill(rawSrc - L),
      sigmaSrc: sigmaLast,
      shift,
      totalSubsteps: total,
    })
    result.xTDst = xLast
  }
  return result
}

function checkDraws(name: string, draws: ArrayLike<number>, length: number): void {
  if (draws == null || draws.length !== length) {
    throw new PolicyShapeError(`${name} must have ${length} uniform draws, got ${draws?.length}`)
  }
  for (let i = 0; i < length; i++) {
    const v = draws[i]
    if (!(v >= 0 && v <= 1))
      throw new PolicyOptionError(`${name}[${i}] must be in [0, 1], got ${v}`)
  }
}
