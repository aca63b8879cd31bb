/**
 * @module webgpu/common.wgsl
 * WGSL shared by the GM and DX kernels. Kept as TypeScript string exports (not `.wgsl` files) so every
 * bundler (esbuild, wrangler, Vite, webpack) ships them without a loader.
 */

/** Threads per workgroup of every policy kernel (1-D; 64 is a safe default on all vendors). */
export const WORKGROUP_SIZE = 64

/**
 * Largest workgroup count per dispatch dimension guaranteed by WebGPU's default limits. Larger grids
 * spill into the y dimension; {@link THREAD_INDEX_WGSL} folds (x, y) back into one linear index.
 */
export const MAX_WORKGROUPS_PER_DIMENSION = 65_535

/**
 * Marker for a dropped GM component's log-weight. WGSL lets implementations assume no ±∞ at run time,
 * so −∞ (golden §3 dropout) is represented by a finite value whose `exp(l − max)` underflows to 0.
 * The host maps values below {@link DROPPED_CUTOFF} back to −∞ when it reads log-weights out.
 */
export const DROPPED_LOGWEIGHT = -3.0e38
/** Any log-weight at or below this is a dropped component. */
export const DROPPED_CUTOFF = -1.0e38

/** `fn threadIndex(gid, nwg) -> u32`: linear thread id of a (possibly 2-D) dispatch. */
export const THREAD_INDEX_WGSL = /* wgsl */ `
const WORKGROUP_SIZE: u32 = ${WORKGROUP_SIZE}u;
const DROPPED_LOGWEIGHT: f32 = ${DROPPED_LOGWEIGHT.toExponential()};
const DROPPED_CUTOFF: f32 = ${DROPPED_CUTOFF.toExponential()};

fn threadIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WORKGROUP_SIZE;
}
`
