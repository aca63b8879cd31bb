// Session-option comparison of `BENCH_SESSION=1 npm run bench -- sdk`, loaded into the demo page (plain
// JS: it runs in the browser as is). One page, one runtime: every variant's session is created from the
// same student bytes, in rounds that interleave the variants, each round starting one variant later (the
// first creations of a page also warm the runtime's code, so round 1 is reported apart), and each session
// runs the student `runs` times on batch 1.

/** Returns, per variant label: { create: ms per round, runs: forward ms of every round }. */
export async function sessionVariants(id, variants, rounds, runs, numThreads = 1) {
  const ort = await import('onnxruntime-web/wasm')
  ort.env.wasm.wasmPaths = '/ort/'
  ort.env.wasm.numThreads = numThreads
  const manifest = await (await fetch(`/models/${id}/manifest.json`)).json()
  const file = manifest.files[manifest.sampling.perNfe[manifest.sampling.defaultNfe].onnx]
  const bytes = new Uint8Array(await (await fetch(`/models/${id}/${file.path}`)).arrayBuffer())
  const { channels: c, height: h, width: w } = manifest.latent
  const length = manifest.text.maxLength
  const x = Float32Array.from({ length: c * h * w }, (_, i) => Math.sin(i))
  const tokens = new BigInt64Array(length).fill(BigInt(manifest.text.padId))
  tokens.fill(5n, 0, 3)
  const out = Object.fromEntries(Object.keys(variants).map((k) => [k, { create: [], runs: [] }]))
  const entries = Object.entries(variants)
  for (let round = 0; round < rounds; round++) {
    for (let v = 0; v < entries.length; v++) {
      const [label, options] = entries[(v + round) % entries.length]
      const started = performance.now()
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: ['wasm'],
        ...options,
      })
      out[label].create.push(performance.now() - started)
      for (let i = 0; i < runs; i++) {
        const t = performance.now()
        const result = await session.run({
          x: new ort.Tensor('float32', x, [1, c, h, w]),
          sigma: new ort.Tensor('float32', Float32Array.of(0.7), [1]),
          tokens: new ort.Tensor('int64', tokens, [1, length]),
        })
        out[label].runs.push(performance.now() - t)
        for (const tensor of Object.values(result)) tensor.dispose()
      }
      await session.release()
    }
  }
  return out
}
