/**
 * @module bench/support/gm-naive
 * The bench baseline: a direct transcription of fixtures/golden/README.md §3 `gm_velocity` followed by one Euler
 * update, the way a first port would write it — recompute means_x0 from the network output on every
 * call, allocate one array per intermediate tensor, one pass per formula line. Float32 storage like the
 * fast path. Only for `bench/policy.ts`; the module's real implementation is policy/src/gm.ts.
 */

export interface NaiveGmInputs {
  B: number
  K: number
  C: number
  H: number
  W: number
  meansU: Float32Array
  logweights: Float32Array
  logstds: Float32Array
  xSrc: Float32Array
  sigmaSrc: number
  eps: number
}

/** One substep x ← x + u(x, σ)·(σ_next − σ); returns a new array. */
export function naiveGmSubstep(
  g: NaiveGmInputs,
  x: Float32Array,
  sigma: number,
  sigmaNext: number,
): Float32Array {
  const { B, K, C, H, W, eps } = g
  const HW = H * W
  // 1. means_x0 = x_src − σ_src·means_u; var_x0 = σ_src²·exp(2·logstd)
  const meansX0 = new Float32Array(B * K * C * HW)
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let c = 0; c < C; c++)
        for (let p = 0; p < HW; p++) {
          const i = ((b * K + k) * C + c) * HW + p
          meansX0[i] = g.xSrc[(b * C + c) * HW + p] - g.sigmaSrc * g.meansU[i]
        }
  const varX0 = new Float32Array(B)
  for (let b = 0; b < B; b++) varX0[b] = g.sigmaSrc * g.sigmaSrc * Math.exp(2 * g.logstds[b])
  // 4. ζ, ν, D
  const st = Math.max(sigma, eps)
  const ss = Math.max(g.sigmaSrc, eps)
  const rt = (1 - st) / st
  const rs = (1 - ss) / ss
  const zeta = rt * rt - rs * rs
  const nu = new Float32Array(B * C * HW)
  for (let i = 0; i < nu.length; i++) nu[i] = (rt * x[i]) / st - (rs * g.xSrc[i]) / ss
  const D = new Float32Array(B)
  for (let b = 0; b < B; b++) D[b] = Math.max(1 + varX0[b] * zeta, eps)
  // posterior means (means_x0 + var·ν)/D
  const postMeans = new Float32Array(B * K * C * HW)
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let c = 0; c < C; c++)
        for (let p = 0; p < HW; p++) {
          const i = ((b * K + k) * C + c) * HW + p
          postMeans[i] = (meansX0[i] + varX0[b] * nu[(b * C + c) * HW + p]) / D[b]
        }
  // logits = logweights + Σ_c means_x0·(ν − ½ζ·means_x0)/D
  const logits = new Float32Array(B * K * HW)
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let p = 0; p < HW; p++) {
        let s = 0
        for (let c = 0; c < C; c++) {
          const m = meansX0[((b * K + k) * C + c) * HW + p]
          s += (m * (nu[(b * C + c) * HW + p] - 0.5 * zeta * m)) / D[b]
        }
        logits[(b * K + k) * HW + p] = g.logweights[(b * K + k) * HW + p] + s
      }
  // softmax over K (stable)
  const max = new Float32Array(B * HW).fill(Number.NEGATIVE_INFINITY)
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let p = 0; p < HW; p++)
        max[b * HW + p] = Math.max(max[b * HW + p], logits[(b * K + k) * HW + p])
  const weights = new Float32Array(B * K * HW)
  const sum = new Float32Array(B * HW)
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let p = 0; p < HW; p++) {
        const e = Math.exp(logits[(b * K + k) * HW + p] - max[b * HW + p])
        weights[(b * K + k) * HW + p] = e
        sum[b * HW + p] += e
      }
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let p = 0; p < HW; p++) weights[(b * K + k) * HW + p] /= sum[b * HW + p]
  // x0_hat = Σ_k w·posterior means; u = (x_t − x0_hat)/σ̃; Euler
  const x0Hat = new Float32Array(B * C * HW)
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let c = 0; c < C; c++)
        for (let p = 0; p < HW; p++)
          x0Hat[(b * C + c) * HW + p] +=
            weights[(b * K + k) * HW + p] * postMeans[((b * K + k) * C + c) * HW + p]
  const u = new Float32Array(B * C * HW)
  for (let i = 0; i < u.length; i++) u[i] = (x[i] - x0Hat[i]) / st
  const next = new Float32Array(B * C * HW)
  for (let i = 0; i < next.length; i++) next[i] = x[i] + u[i] * (sigmaNext - sigma)
  return next
}
