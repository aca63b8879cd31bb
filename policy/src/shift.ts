/**
 * @module shift
 * Raw time τ ↔ noise level σ under a time shift s (golden §2):
 * σ = s·τ / (1 + (s − 1)·τ), τ = σ / (s + (1 − s)·σ). Substeps are uniform in τ.
 * Both map [0, 1] onto [0, 1]; results are capped at 1 because rounding can otherwise give
 * 1.0000000000000002 at τ = 1 for some shifts (e.g. s = 0.2), which is not a valid noise level.
 */

/**
 * Raw time → noise level.
 * @example warp(0.5, 3.2) // 0.7619…
 */
export const warp = (tau: number, shift: number): number =>
  Math.min((shift * tau) / (1 + (shift - 1) * tau), 1)

/**
 * Noise level → raw time (inverse of {@link warp}).
 * @example unwarp(warp(0.3, 3.2), 3.2) // 0.3
 */
export const unwarp = (sigma: number, shift: number): number =>
  Math.min(sigma / (shift + (1 - shift) * sigma), 1)
