/**
 * Assembles policy/src/wasm/*.wat with wabt and writes `<name>.wasm.ts` (the bytes as base64, so Node,
 * browsers and bundlers load the kernel without a file loader or a fetch) and `<name>.wasm` (for
 * runtimes that only run bundled wasm: Cloudflare Workers import it as a WebAssembly.Module).
 * `npm run build:wasm -w @piflow/policy`; policy/src/wasm/gm-wasm.test.ts fails when either is stale.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { assembleWat, wasmModuleSource } from '../src/wasm/assemble.ts'

const dir = fileURLToPath(new URL('../src/wasm/', import.meta.url))
for (const file of readdirSync(dir).filter((f) => f.endsWith('.wat'))) {
  const bytes = await assembleWat(file, readFileSync(dir + file, 'utf8'))
  const out = `${dir}${file.replace(/\.wat$/, '.wasm')}`
  writeFileSync(out, bytes)
  writeFileSync(`${out}.ts`, wasmModuleSource(file, bytes))
  console.log(`${file}: ${bytes.length} bytes → ${out}, ${out}.ts`)
}
