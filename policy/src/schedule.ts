/**
 * @module schedule
 * NFE schedule of piFlow's FlowMapSDE scheduler (fixtures/golden/README.md §3 `schedule`): raw-time grid with a
 * shortened final step (fs), optional dynamic shift, optional SDE-style h, substep counts and the
 * automatic GM temperature.
 */
import { PolicyOptionError } from './errors.ts'
import { substepCount } from './rollout.ts'
import { unwarp, warp } from './shift.ts'
import type { Schedule, ScheduleOptions, ScheduleStep } from './types.ts'
import { checkInt, checkNumber } from './validate.ts'

/** Defaults of {@link buildSchedule}, in one place. */
export const SCHEDULE_DEFAULTS = {
  shift: 1,
  finalStepSizeScale: 1,
  totalSubsteps: 128,
  h: 0,
  numTrainTimesteps: 1000,
} as const

/**
 * Shift from the sequence length (FLUX-style dynamic shifting):
 * exp((seqLen − base)·(maxLog − baseLog)/(max − base) + baseLog).
 */
export function dynamicShift(options: NonNullable<ScheduleOptions['dynamicShift']>): number {
  const { seqLen, baseSeqLen, maxSeqLen, baseLogshift, maxLogshift } = options
  checkNumber('dynamicShift.seqLen', seqLen, 0)
  checkNumber('dynamicShift.baseSeqLen', baseSeqLen, 0)
  checkNumber('dynamicShift.maxSeqLen', maxSeqLen, 0)
  checkNumber('dynamicShift.baseLogshift', baseLogshift)
  checkNumber('dynamicShift.maxLogshift', maxLogshift)
  if (maxSeqLen === baseSeqLen) {
    throw new PolicyOptionError('dynamicShift.maxSeqLen must differ from baseSeqLen')
  }
  return Math.exp(
    ((seqLen - baseSeqLen) * (maxLogshift - baseLogshift)) / (maxSeqLen - baseSeqLen) +
      baseLogshift,
  )
}

/** Automatic GM temperature clip(0.1·(nfe − 1), 0, 1), used for every step but the last. */
export const autoTemperature = (nfe: number): number => Math.min(Math.max(0.1 * (nfe - 1), 0), 1)

/**
 * Builds the σ schedule of an `nfe`-step sampler.
 *
 * @example
 * ```ts
 * const s = buildSchedule({ nfe: 4, shift: 3.2, finalStepSizeScale: 0.5 })
 * s.steps.map((step) => step.numSubsteps) // [37, 37, 37, 18]
 * ```
 * @throws {PolicyError} when an option is out of range
 */
export function buildSchedule(options: ScheduleOptions): Schedule {
  if (options == null || typeof options !== 'object') {
    throw new PolicyOptionError('buildSchedule needs an options object with nfe')
  }
  const nfe = checkInt('nfe', options.nfe, 1, 10_000)
  const fs = checkNumber(
    'finalStepSizeScale',
    options.finalStepSizeScale ?? SCHEDULE_DEFAULTS.finalStepSizeScale,
    0,
    Number.POSITIVE_INFINITY,
    true,
  )
  const totalSubsteps = checkNumber(
    'totalSubsteps',
    options.totalSubsteps ?? SCHEDULE_DEFAULTS.totalSubsteps,
    1,
    1e6,
  )
  const h = checkNumber('h', options.h ?? SCHEDULE_DEFAULTS.h, 0)
  const numTrainTimesteps = checkNumber(
    'numTrainTimesteps',
    options.numTrainTimesteps ?? SCHEDULE_DEFAULTS.numTrainTimesteps,
    0,
    Number.POSITIVE_INFINITY,
    true,
  )
  const shift = options.dynamicShift
    ? dynamicShift(options.dynamicShift)
    : checkNumber(
        'shift',
        options.shift ?? SCHEDULE_DEFAULTS.shift,
        0,
        Number.POSITIVE_INFINITY,
        true,
      )
  if (!(shift > 0 && Number.isFinite(shift))) {
    throw new PolicyOptionError(`the shift in use must be a finite positive number, got ${shift}`)
  }

  const rawSrc = Array.from({ length: nfe }, (_, k) => Math.max(1 - k / (nfe - 1 + fs), 0))
  const sigmaSrc = rawSrc.map((t) => warp(t, shift))
  const auto = autoTemperature(nfe)
  const steps: ScheduleStep[] = []
  let totalUsed = 0
  for (let k = 0; k < nfe; k++) {
    const sSrc = sigmaSrc[k]
    const sNext = k + 1 < nfe ? sigmaSrc[k + 1] : 0
    const m = h === 0 ? 1 : ((sNext * (1 - sSrc)) / Math.max(sSrc * (1 - sNext), 1e-6)) ** (h * h)
    const sDst = (sNext * m) / Math.max(1 - sNext + sNext * m, 1e-6)
    const rawDst = unwarp(sDst, shift)
    const numSubsteps = substepCount(rawSrc[k], rawDst, totalSubsteps)
    totalUsed += numSubsteps
    steps.push({
      rawSrc: rawSrc[k],
      rawDst,
      sigmaSrc: sSrc,
      sigmaNext: sNext,
      sigmaDst: sDst,
      m,
      timestep: numTrainTimesteps * sSrc,
      timestepDst: numTrainTimesteps * sDst,
      numSubsteps,
      temperature: k === nfe - 1 ? 1 : auto,
    })
  }
  return {
    nfe,
    shiftUsed: shift,
    totalSubsteps,
    autoTemperature: auto,
    totalSubstepsUsed: totalUsed,
    steps,
  }
}
