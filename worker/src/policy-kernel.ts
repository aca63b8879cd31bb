/**
 * @module policy-kernel
 * Workers refuse to compile WebAssembly from bytes at run time, so the policy module cannot load its
 * GM kernel the way Node and browsers do; wrangler bundles the `.wasm` file as a compiled module
 * instead, and this hands it over. Edge integration then runs the same float32 kernel as the backend
 * and the browser SDK, so a seed gives the same image on every path.
 */
import { configureGmKernel } from '@piflow/policy'
import gmKernel from '@piflow/policy/wasm/gm-kernel.wasm'

configureGmKernel({ module: gmKernel })
