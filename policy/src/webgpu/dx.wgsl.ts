/**
 * @module webgpu/dx.wgsl
 * WGSL for the DX policy (fixtures/golden/README.md §3 `dx_velocity`, `rollout`). The policy is elementwise, so
 * one thread owns one element of x for the whole segment:
 *
 * - `prepareNodes` (one thread per element of x): nodes X_n = x_src − σ_src·grid_u_n
 * - `rollout`      every substep of the segment, x updated in place
 * - `velocity`     u and x0_hat at one query
 *
 * Scalars buffer (vec4 per entry): entries [0, B) are per sample `(σ_src, 0, 0, 0)`; entries
 * B + s·B + b are per (substep s, sample b) `(step, a, wa, wb)`, all computed by the host in float64:
 * grid mode: a = node index i, x0_hat = wa·X_i + wb·X_{i+1} (wa = i + 1 − q, wb = q − i);
 * polynomial mode: a = τ_src − τ, x0_hat = Σ_n a^n·X_n (Horner).
 * step = (σ_next − σ_t)/σ̃_t for a rollout and 1/σ̃_t for a velocity query.
 */
import { THREAD_INDEX_WGSL } from './common.wgsl.ts'

/** Byte size of the DX params uniform (8 × 4 bytes). */
export const DX_PARAMS_BYTES = 32

/** `params.mode` values. */
export const DX_MODE = { grid: 0, polynomial: 1 } as const

/** Binding numbers of the DX module. */
export const DX_BINDING = { params: 0, scalars: 1, gridU: 2, nodes: 3, x: 4, out: 5 } as const

/** Full WGSL source of the DX module. */
export const DX_WGSL = /* wgsl */ `
${THREAD_INDEX_WGSL}

struct Params {
  batch: u32,
  n: u32,
  channels: u32,
  pixels: u32,
  numSubsteps: u32,
  mode: u32,
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> scalars: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gridU: array<f32>;
@group(0) @binding(3) var<storage, read_write> nodes: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
// velocity only: [u (B·C·P) | x0_hat (B·C·P)]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn prepareNodes(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let CP = params.channels * params.pixels;
  if (id >= params.batch * CP) { return; }
  let b = id / CP;
  let e = id % CP;
  let xi = x[id];
  let sigmaSrc = scalars[b].x;
  for (var n = 0u; n < params.n; n++) {
    let i = (b * params.n + n) * CP + e;
    nodes[i] = xi - sigmaSrc * gridU[i];
  }
}

fn x0Hat(b: u32, e: u32, sub: vec4<f32>) -> f32 {
  let N = params.n;
  let base = b * N * params.channels * params.pixels + e;
  let stride = params.channels * params.pixels;
  if (params.mode == 0u) {
    let i = u32(sub.y);
    var r = sub.z * nodes[base + i * stride];
    if (i + 1u < N) { r += sub.w * nodes[base + (i + 1u) * stride]; }
    return r;
  }
  var acc = nodes[base + (N - 1u) * stride];
  for (var n = N - 1u; n > 0u; n--) {
    acc = acc * sub.y + nodes[base + (n - 1u) * stride];
  }
  return acc;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn rollout(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let B = params.batch;
  let CP = params.channels * params.pixels;
  if (id >= B * CP) { return; }
  let b = id / CP;
  let e = id % CP;
  var xi = x[id];
  for (var s = 0u; s < params.numSubsteps; s++) {
    let sub = scalars[B + s * B + b];
    xi = xi + (xi - x0Hat(b, e, sub)) * sub.x;
  }
  x[id] = xi;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn velocity(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = threadIndex(gid, nwg);
  let B = params.batch;
  let CP = params.channels * params.pixels;
  if (id >= B * CP) { return; }
  let b = id / CP;
  let e = id % CP;
  let sub = scalars[B + b];
  let x0 = x0Hat(b, e, sub);
  out[id] = (x[id] - x0) * sub.x;
  out[B * CP + id] = x0;
}
`
