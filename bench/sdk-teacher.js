// Teacher baseline of `npm run bench -- sdk`, loaded into the demo page (plain JS: it runs in the
// browser as is). 50-step Euler on the shifted schedule with classifier-free guidance as the manifest
// says (both halves in one batch-2 run), on the page's onnxruntime-web WASM build.

/** warp(τ, shift) of the shared schedule: σ = shift·τ / (1 + (shift − 1)·τ). */
const warp = (t, shift) => (shift * t) / (1 + (shift - 1) * t)

/** Returns [cold ms (download + session + sampling), ...warm ms] of the teacher of model `id`. */
export async function teacherRuns(id, warmRuns, numThreads = 1) {
  const started = performance.now()
  const manifest = await (await fetch(`/models/${id}/manifest.json`)).json()
  const spec = manifest.teacher
  const file = manifest.files[spec.onnx]
  const ort = await import('onnxruntime-web/wasm')
  ort.env.wasm.wasmPaths = '/ort/'
  ort.env.wasm.numThreads = numThreads
  const bytes = new Uint8Array(await (await fetch(`/models/${id}/${file.path}`)).arrayBuffer())
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] })
  const { channels: c, height: h, width: w } = manifest.latent
  const length = manifest.text.maxLength
  const n = c * h * w
  const sample = async () => {
    const x = Float32Array.from({ length: n }, () => Math.random() * 2 - 1)
    const xx = new Float32Array(2 * n)
    const tokens = new BigInt64Array(2 * length).fill(BigInt(manifest.text.padId))
    tokens.fill(5n, 0, 3) // a three-token prompt in the conditional half, padding in the other
    for (let i = 0; i < spec.steps; i++) {
      const sigma = warp(1 - i / spec.steps, spec.shift)
      const next = warp(1 - (i + 1) / spec.steps, spec.shift)
      xx.set(x, 0)
      xx.set(x, n)
      const out = await session.run({
        x: new ort.Tensor('float32', xx, [2, c, h, w]),
        sigma: new ort.Tensor('float32', new Float32Array(2).fill(sigma), [2]),
        tokens: new ort.Tensor('int64', tokens, [2, length]),
      })
      const u = out.u.data
      for (let j = 0; j < n; j++)
        x[j] += (u[n + j] + spec.guidance * (u[j] - u[n + j])) * (next - sigma)
    }
  }
  await sample()
  const times = [performance.now() - started]
  for (let i = 0; i < warmRuns; i++) {
    const t = performance.now()
    await sample()
    times.push(performance.now() - t)
  }
  await session.release()
  return times
}
