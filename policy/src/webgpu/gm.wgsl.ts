/**
 * @module webgpu/gm.wgsl
 * WGSL for the GM policy (fixtures/golden/README.md §3 `gm_velocity`, `rollout`). Four entry points share one
 * module and one binding table; each pipeline's auto layout keeps only the bindings its entry uses:
 *
 * - `prepareMeans`  (one thread per element of means_x0): means_x0 = x_src − σ_src·means_u
 * - `preparePixels` (one thread per (sample, pixel)): var_x0, ν_src = r_src·x_src/σ̃_src, and the
 *   effective log-weights (temperature log-softmax over K; dropped components keep their marker)
 * - `rollout`       (one thread per (sample, pixel)): every substep of the segment, x updated in place
 * - `velocity`      (one thread per (sample, pixel)): u, x0_hat and posterior weights at one query
 *
 * A pixel's K components share one weight vector across channels, so a thread owns all C channels of
 * its pixel and no substep needs data from another thread: the whole segment is one dispatch, with the
 * per-substep scalars read from a table the host precomputed in float64.
 *
 * Scalars buffer (vec4 per entry): entries [0, B) are per sample `(σ_src, r_src/σ̃_src, σ_src²·T', 0)`
 * with T' = T when T < 1 else 1; entries B + s·B + b are per (substep s, sample b)
 * `(r_t/σ̃_t, ζ = r_t² − r_src², step, 0)` where step = (σ_next − σ_t)/σ̃_t for a rollout and 1/σ̃_t
 * for a velocity query, so that x ← x + (x − x0_hat)·step is the Euler update and u = (x − x0_hat)·step.
 */
import { THREAD_INDEX_WGSL } from './common.wgsl.ts'

/** Compile-time choices of the GM module (one pipeline set per distinct value). */
export interface GmWgslOptions {
  /**
   * C, compiled in: channel loops get constant bounds and the per-thread channel arrays a constant
   * size, so drivers can unroll them and keep the pixel's state in registers.
   */
  channels: number
  /**
   * Store means_x0 as half floats, two channels per u32 (`pack2x16float`): half the memory and
   * bandwidth of the largest tensor. Core WGSL, so it needs no `shader-f16` feature.
   */
  halfMeans: boolean
}

/** Byte size of the GM params uniform (8 × 4 bytes). */
export const GM_PARAMS_BYTES = 32

/** Binding numbers of the GM module (the host builds bind groups from these). */
export const GM_BINDING = {
  params: 0,
  scalars: 1,
  meansU: 2,
  logweights: 3,
  logstds: 4,
  meansX0: 5,
  logweightsEff: 6,
  nuSrc: 7,
  varX0: 8,
  x: 9,
  out: 10,
} as const

/** Full WGSL source of the GM module for the given options. */
export const gmWgsl = ({ channels, halfMeans }: GmWgslOptions): string => /* wgsl */ `
${THREAD_INDEX_WGSL}
const C: u32 = ${channels}u;
// Even, so the half-float path can unpack channel pairs without a bound check.
const C_EVEN: u32 = ${channels + (channels % 2)}u;

struct Params {
  batch: u32,
  k: u32,
  channels: u32, // = C, which the kernels use (compiled in); kept for a self-describing layout
  pixels: u32,
  numSubsteps: u32,
  pad0: u32,
  eps: f32,
  temperature: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> scalars: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> meansU: array<f32>;
@group(0) @binding(3) var<storage, read> logweights: array<f32>;
@group(0) @binding(4) var<storage, read> logstds: array<f32>;
@group(0) @binding(5) var<storage, read_write> meansX0: array<${halfMeans ? 'u32' : 'f32'}>;
@group(0) @binding(6) var<storage, read_write> logweightsEff: array<f32>;
@group(0) @binding(7) var<storage, read_write> nuSrc: array<f32>;
@group(0) @binding(8) var<storage, read_write> varX0: array<f32>;
@group(0) @binding(9) var<storage, read_write> x: array<f32>;
// velocity only: [u (B·C·P) | x0_hat (B·C·P) | posterior weights (B·K·P)]
@group(0) @binding(10) var<storage, read_write> out: array<f32>;

// Per-thread state of the current pixel, one entry per channel (registers on real GPUs).
var<private> xs: array<f32, C_EVEN>;   // x at the current substep
var<private> nu: array<f32, C_EVEN>;   // ν = r_t·x_t/σ̃_t − r_src·x_src/σ̃_src
var<private> mk: array<f32, C_EVEN>;   // means_x0 of the component being visited
var<private> acc: array<f32, C_EVEN>;  // Σ_k w_k·m_k (online softmax, normalised at the end)
var<private> top: f32;                // running max of the logits
var<private> total: f32;              // Σ_k exp(logit_k − top)

${halfMeans ? HALF_MEANS_WGSL : FLOAT_MEANS_WGSL}

@compute @workgroup_size(WORKGROUP_SIZE)
fn preparePixels(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let P = params.pixels;
  if (id >= params.batch * P) { return; }
  let b = id / P;
  let p = id % P;
  let K = params.k;
  let sample = scalars[b];
  if (p == 0u) {
    varX0[b] = sample.z * exp(2.0 * logstds[b]);
  }
  for (var c = 0u; c < C; c++) {
    let i = (b * C + c) * P + p;
    nuSrc[i] = sample.y * x[i];
  }
  if (params.temperature < 1.0) {
    // log_softmax over the kept components of logweights / max(T, eps)
    let invT = 1.0 / max(params.temperature, params.eps);
    var lwMax = DROPPED_LOGWEIGHT;
    for (var k = 0u; k < K; k++) {
      let l = logweights[(b * K + k) * P + p];
      if (l > DROPPED_CUTOFF) { lwMax = max(lwMax, l * invT); }
    }
    var sum = 0.0;
    for (var k = 0u; k < K; k++) {
      let l = logweights[(b * K + k) * P + p];
      if (l > DROPPED_CUTOFF) { sum += exp(l * invT - lwMax); }
    }
    let logNorm = lwMax + log(sum);
    for (var k = 0u; k < K; k++) {
      let i = (b * K + k) * P + p;
      let l = logweights[i];
      var e = DROPPED_LOGWEIGHT;
      if (l > DROPPED_CUTOFF) { e = l * invT - logNorm; }
      logweightsEff[i] = e;
    }
  } else {
    for (var k = 0u; k < K; k++) {
      let i = (b * K + k) * P + p;
      logweightsEff[i] = logweights[i];
    }
  }
}

// Logit of component k at (b, p) (golden §3 step 4, regrouped):
// logweights + (Σ_c m·ν − ½ζ·Σ_c m²)/D. Leaves the component's means in mk.
fn logit(b: u32, k: u32, p: u32, zeta: f32, invD: f32) -> f32 {
  loadMeans(b, k, p);
  var dot = 0.0;
  var sq = 0.0;
  for (var c = 0u; c < C; c++) {
    dot += mk[c] * nu[c];
    sq += mk[c] * mk[c];
  }
  return logweightsEff[(b * params.k + k) * params.pixels + p] + (dot - 0.5 * zeta * sq) * invD;
}

// Posterior mixture at (b, p) for the query sub, with x_t in xs: one pass over the K components with
// an online softmax (running max, rescaled sums), so each mean is read once per substep. Leaves
// acc = Σ_k w_k·m_k, top and total; returns 1/D.
fn posterior(b: u32, p: u32, sub: vec4<f32>, v: f32) -> f32 {
  let P = params.pixels;
  let zeta = sub.y;
  let invD = 1.0 / max(1.0 + v * zeta, params.eps);
  for (var c = 0u; c < C; c++) {
    nu[c] = sub.x * xs[c] - nuSrc[(b * C + c) * P + p];
    acc[c] = 0.0;
  }
  top = DROPPED_LOGWEIGHT;
  total = 0.0;
  for (var k = 0u; k < params.k; k++) {
    let l = logit(b, k, p, zeta, invD);
    if (l > top) {
      // new maximum: rescale what was summed so far (exp(−huge) = 0 drops a dropped first component)
      let scale = exp(top - l);
      total = total * scale + 1.0;
      for (var c = 0u; c < C; c++) { acc[c] = acc[c] * scale + mk[c]; }
      top = l;
    } else {
      let e = exp(l - top);
      total += e;
      for (var c = 0u; c < C; c++) { acc[c] += e * mk[c]; }
    }
  }
  let inv = 1.0 / total;
  for (var c = 0u; c < C; c++) { acc[c] *= inv; }
  return invD;
}

// x0_hat of channel c after posterior(): Σ_k w_k·(m_k + var·ν)/D = (Σ_k w_k·m_k + var·ν)/D.
fn x0Hat(c: u32, v: f32, invD: f32) -> f32 {
  return (acc[c] + v * nu[c]) * invD;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn rollout(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let B = params.batch;
  let P = params.pixels;
  if (id >= B * P) { return; }
  let b = id / P;
  let p = id % P;
  let v = varX0[b];
  // The pixel's state stays in registers for the whole segment: one load, one store.
  for (var c = 0u; c < C; c++) { xs[c] = x[(b * C + c) * P + p]; }
  for (var s = 0u; s < params.numSubsteps; s++) {
    let sub = scalars[B + s * B + b];
    let invD = posterior(b, p, sub, v);
    for (var c = 0u; c < C; c++) { xs[c] += (xs[c] - x0Hat(c, v, invD)) * sub.z; }
  }
  for (var c = 0u; c < C; c++) { x[(b * C + c) * P + p] = xs[c]; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn velocity(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let B = params.batch;
  let P = params.pixels;
  if (id >= B * P) { return; }
  let b = id / P;
  let p = id % P;
  let K = params.k;
  let v = varX0[b];
  let sub = scalars[B + b];
  for (var c = 0u; c < C; c++) { xs[c] = x[(b * C + c) * P + p]; }
  let invD = posterior(b, p, sub, v);
  let n = B * C * P;
  for (var c = 0u; c < C; c++) {
    let i = (b * C + c) * P + p;
    let x0 = x0Hat(c, v, invD);
    out[i] = (xs[c] - x0) * sub.z;
    out[n + i] = x0;
  }
  // Posterior weights for inspection: a second pass over the components (velocity queries only).
  for (var k = 0u; k < K; k++) {
    out[2u * n + (b * K + k) * P + p] = exp(logit(b, k, p, sub.y, invD) - top) / total;
  }
}
`

// means_x0 as float32, layout (B, K, C, P) like means_u.
const FLOAT_MEANS_WGSL = /* wgsl */ `
fn loadMeans(b: u32, k: u32, p: u32) {
  let base = (b * params.k + k) * C;
  for (var c = 0u; c < C; c++) {
    mk[c] = meansX0[(base + c) * params.pixels + p];
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn prepareMeans(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let K = params.k;
  let P = params.pixels;
  if (id >= params.batch * K * C * P) { return; }
  let p = id % P;
  let c = (id / P) % C;
  let b = id / (K * C * P);
  meansX0[id] = x[(b * C + c) * P + p] - scalars[b].x * meansU[id];
}
`

// means_x0 as half floats, channels (2j, 2j+1) of a pixel packed in one u32: layout (B, K, ⌈C/2⌉, P).
// One thread writes a whole word, so no two threads share one.
const HALF_MEANS_WGSL = /* wgsl */ `
fn loadMeans(b: u32, k: u32, p: u32) {
  let words = (C + 1u) / 2u;
  let base = (b * params.k + k) * words;
  for (var j = 0u; j < words; j++) {
    let pair = unpack2x16float(meansX0[(base + j) * params.pixels + p]);
    mk[2u * j] = pair.x;
    // With an odd C this writes the unused slot C < C_EVEN.
    mk[2u * j + 1u] = pair.y;
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn prepareMeans(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let K = params.k;
  let P = params.pixels;
  let words = (C + 1u) / 2u;
  if (id >= params.batch * K * words * P) { return; }
  let p = id % P;
  let j = (id / P) % words;
  let k = (id / (words * P)) % K;
  let b = id / (K * words * P);
  let sigmaSrc = scalars[b].x;
  let c0 = 2u * j;
  let m0 = x[(b * C + c0) * P + p] - sigmaSrc * meansU[((b * K + k) * C + c0) * P + p];
  var m1 = 0.0;
  if (c0 + 1u < C) {
    m1 = x[(b * C + c0 + 1u) * P + p] - sigmaSrc * meansU[((b * K + k) * C + c0 + 1u) * P + p];
  }
  meansX0[id] = pack2x16float(vec2<f32>(m0, m1));
}
`
