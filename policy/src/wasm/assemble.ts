/**
 * @module wasm/assemble
 * Build-time only (scripts/build-wasm.ts and the staleness test): WAT text → wasm bytes with wabt, and
 * the TypeScript module that carries them. Never imported by runtime code.
 */
import wabtInit from 'wabt'

/** Assembles WAT text (SIMD enabled) into validated wasm bytes. */
export async function assembleWat(name: string, text: string): Promise<Uint8Array> {
  const wabt = await wabtInit()
  const module = wabt.parseWat(name, text, { simd: true })
  try {
    module.validate()
    return new Uint8Array(module.toBinary({}).buffer)
  } finally {
    module.destroy()
  }
}

/** The generated `<name>.wasm.ts` source for `bytes`. */
export function wasmModuleSource(watFile: string, bytes: Uint8Array): string {
  const base64 = Buffer.from(bytes).toString('base64')
  const lines = base64.match(/.{1,96}/g) ?? []
  return [
    `// Generated from ${watFile} by \`npm run build:wasm -w @piflow/policy\`. Do not edit.`,
    `export const WASM_BASE64 =`,
    ...lines.map((l, i) => `  '${l}'${i === lines.length - 1 ? '' : ' +'}`),
    '',
  ].join('\n')
}
