/**
 * @module bench/support/sdk-size
 * What `@piflow/sdk` costs a page, min+gzip (esbuild minify, zlib level 9), measured on the built
 * package (sdk/dist) the way an app's bundler sees it (code splitting on): for each entry, the code
 * loaded at once (the entry and the chunks it imports statically, which an app's bundler merges into
 * its own chunk, so gzipped together) and each lazily imported chunk (gzipped alone), with
 * onnxruntime-web external and bundled; the onnxruntime-web .wasm files apart.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { gzipSync } from 'node:zlib'
import { build, type Metafile } from 'esbuild'
import { runtimeFile } from '../../sdk/src/local/ort.ts'

/** Target of issue 16 for `@piflow/sdk/local` without onnxruntime-web. */
export const LOCAL_TARGET_BYTES = 40 * 1024
/** Budget of issue 7 for the root entry (ky included), also asserted by sdk/src/package.test.ts. */
export const ROOT_BUDGET_BYTES = 8 * 1024

const gzip = (bytes: Uint8Array) => gzipSync(bytes, { level: 9 }).length

interface EntrySize {
  /** The entry and its static imports, min+gzip. */
  eagerBytes: number
  /** Lazily imported chunks (dynamic import), min+gzip each, by their main input. */
  lazy: { chunk: string; bytes: number }[]
}

/** Bundles `entry` with splitting and sums its eager and lazy outputs. */
const measure = async (entry: string, external: string[]): Promise<EntrySize> => {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    outdir: '/virtual',
    write: false,
    metafile: true,
    external,
    logLevel: 'silent',
  })
  const outputs = result.metafile.outputs
  const contentsOf = (path: string) =>
    result.outputFiles.find((f) => f.path === resolve(path))!.contents
  const bytesOf = (path: string) => gzip(contentsOf(path))
  const entryOut = Object.keys(outputs).find((k) => outputs[k]!.entryPoint)!
  const eager = new Set<string>()
  const lazy = new Set<string>()
  const walk = (path: string) => {
    if (eager.has(path)) return
    eager.add(path)
    for (const imported of outputs[path]!.imports) {
      if (imported.external) continue
      if (imported.kind === 'dynamic-import') lazy.add(imported.path)
      else walk(imported.path)
    }
  }
  walk(entryOut)
  // Chunks reached only by dynamic imports (and what they import statically, beyond the eager set).
  const lazySizes = [...lazy]
    .filter((path) => !eager.has(path))
    .map((path) => ({ chunk: mainInput(outputs[path]!), bytes: bytesOf(path) }))
  // An app's bundler merges the statically imported chunks into the app's own chunk: one gzip.
  const eagerCode = Buffer.concat([...eager].map(contentsOf))
  return { eagerBytes: gzip(eagerCode), lazy: lazySizes }
}

/** The input contributing most bytes to an output: names a chunk after what it is. */
const mainInput = (output: Metafile['outputs'][string]) =>
  Object.entries(output.inputs)
    .sort((a, b) => b[1].bytesInOutput - a[1].bytesInOutput)[0]![0]
    .replace(/^.*node_modules\//, '')
    .replace(/^(\.\.\/)+/, '')

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`

/** Measures both entries of the built package in `distDir` and prints the table. */
export const printSdkSizes = async (distDir: string) => {
  const ort = ['onnxruntime-web', 'onnxruntime-web/*']
  const root = await measure(join(distDir, 'index.js'), [...ort])
  const localNoOrt = await measure(join(distDir, 'local.js'), ['ky', ...ort])
  const localWithOrt = await measure(join(distDir, 'local.js'), ['ky'])
  const ortDir = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'))
  const wasm = (name: string) => readFileSync(join(ortDir, name))

  console.log('\n## @piflow/sdk size, min+gzip (esbuild minify, gzip -9), built package\n')
  console.log('| entry | loaded at once | lazily loaded chunks | target |')
  console.log('|---|---|---|---|')
  const lazyList = (s: EntrySize) => s.lazy.map((l) => `${l.chunk} ${kb(l.bytes)}`).join('; ')
  console.log(
    `| \`@piflow/sdk\` (ky included) | ${kb(root.eagerBytes)} (${root.eagerBytes} B) | ${lazyList(root)} | ≤ ${kb(ROOT_BUDGET_BYTES)}: ${(root.eagerBytes / ROOT_BUDGET_BYTES).toFixed(2)}× |`,
  )
  console.log(
    `| \`@piflow/sdk/local\`, without onnxruntime-web | ${kb(localNoOrt.eagerBytes)} (${localNoOrt.eagerBytes} B) | ${lazyList(localNoOrt)} | ≤ ${kb(LOCAL_TARGET_BYTES)}: ${(localNoOrt.eagerBytes / LOCAL_TARGET_BYTES).toFixed(2)}× |`,
  )
  console.log(
    `| \`@piflow/sdk/local\`, onnxruntime-web bundled | ${kb(localWithOrt.eagerBytes)} | ${lazyList(localWithOrt)} | — |`,
  )
  for (const name of [runtimeFile(false), runtimeFile(true)]) {
    const bytes = wasm(name)
    console.log(
      `| onnxruntime-web runtime file \`${name}\` (${name === runtimeFile(true) ? 'WebGPU' : 'WASM'} build; fetched and cached at run time) | ${(bytes.length / 2 ** 20).toFixed(1)} MiB raw, ${(gzip(bytes) / 2 ** 20).toFixed(1)} MiB gzip | | — |`,
    )
  }
  return { root, localNoOrt, localWithOrt }
}
