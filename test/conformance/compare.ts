/**
 * @module compare
 * Elementwise comparison for golden cases: |got − exp| ≤ atol + rtol·|exp|; integers and booleans
 * exactly; non-finite expectations must be matched exactly (−∞ by −∞, NaN by NaN). Failures name the
 * worst element by its multi-index so a diff can be read without a debugger.
 */
import type { Tolerance } from './cases.ts'

/** Outcome of one compared field. */
export interface FieldResult {
  field: string
  ok: boolean
  /** one line: what was compared, or why it failed */
  message: string
  /** largest |got − exp| over finite elements */
  maxAbsError?: number
}

/** Flat index → "[i0, i1, …]" for a row-major shape. */
export function multiIndex(flat: number, shape: readonly number[]): string {
  const idx: number[] = []
  let rest = flat
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(rest % shape[d])
    rest = Math.floor(rest / shape[d])
  }
  return `[${idx.join(', ')}]`
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toPrecision(10) : String(v))

/**
 * Compares numbers with tolerance. `got` may be any array-like (Float32Array results are compared as
 * their exact float32 values).
 */
export function compareClose(
  field: string,
  got: ArrayLike<number> | number | undefined,
  expected: ArrayLike<number> | number,
  shape: readonly number[],
  tol: Tolerance,
): FieldResult {
  const exp = typeof expected === 'number' ? [expected] : expected
  const g = typeof got === 'number' ? [got] : got
  if (g == null) return { field, ok: false, message: `${field}: not produced` }
  if (g.length !== exp.length) {
    return {
      field,
      ok: false,
      message: `${field}: length ${g.length}, expected ${exp.length} (shape [${shape}])`,
    }
  }
  let bad = 0
  let worst = -1
  let worstExcess = Number.NEGATIVE_INFINITY
  let maxAbs = 0
  for (let i = 0; i < exp.length; i++) {
    const e = exp[i]
    const v = g[i]
    if (!Number.isFinite(e)) {
      const same = Number.isNaN(e) ? Number.isNaN(v) : v === e
      if (!same) {
        bad++
        if (worstExcess < Number.POSITIVE_INFINITY) {
          worstExcess = Number.POSITIVE_INFINITY
          worst = i
        }
      }
      continue
    }
    const diff = Math.abs(v - e)
    const allowed = tol.atol + tol.rtol * Math.abs(e)
    if (diff > maxAbs || Number.isNaN(diff))
      maxAbs = Number.isNaN(diff) ? Number.NaN : Math.max(maxAbs, diff)
    if (!(diff <= allowed)) {
      bad++
      const excess = Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff - allowed
      if (excess > worstExcess) {
        worstExcess = excess
        worst = i
      }
    }
  }
  if (bad === 0) {
    return {
      field,
      ok: true,
      message: `${field}: ${exp.length} values, max |err| ${maxAbs.toExponential(2)}`,
      maxAbsError: maxAbs,
    }
  }
  const e = exp[worst]
  const v = g[worst]
  const at = shape.length > 1 ? `${multiIndex(worst, shape)} (flat ${worst})` : `[${worst}]`
  return {
    field,
    ok: false,
    maxAbsError: maxAbs,
    message:
      `${field}: ${bad}/${exp.length} values out of tolerance (atol ${tol.atol}, rtol ${tol.rtol}); ` +
      `worst ${at}: got ${fmt(v)}, expected ${fmt(e)}, |diff| ${fmt(Math.abs(v - e))} > allowed ` +
      `${fmt(tol.atol + tol.rtol * Math.abs(e))}`,
  }
}

/** Compares integers or booleans exactly (booleans as 0/1). */
export function compareExact(
  field: string,
  got: ArrayLike<number | boolean> | number | boolean | undefined,
  expected: ArrayLike<number | boolean> | number | boolean,
  shape: readonly number[],
): FieldResult {
  const asNum = (v: number | boolean) => (typeof v === 'boolean' ? (v ? 1 : 0) : v)
  const exp = typeof expected === 'object' ? Array.from(expected, asNum) : [asNum(expected)]
  if (got == null) return { field, ok: false, message: `${field}: not produced` }
  const g = typeof got === 'object' ? Array.from(got, asNum) : [asNum(got)]
  if (g.length !== exp.length) {
    return { field, ok: false, message: `${field}: length ${g.length}, expected ${exp.length}` }
  }
  const bad = exp.findIndex((e, i) => g[i] !== e)
  if (bad < 0) return { field, ok: true, message: `${field}: ${exp.length} values exact` }
  const count = exp.filter((e, i) => g[i] !== e).length
  const at = shape.length > 1 ? multiIndex(bad, shape) : `[${bad}]`
  return {
    field,
    ok: false,
    message: `${field}: ${count}/${exp.length} values differ (exact); first ${at}: got ${g[bad]}, expected ${exp[bad]}`,
  }
}
