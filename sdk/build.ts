/**
 * Builds the published package into dist/: ESM bundles (esbuild) + type declarations (tsc). Runs as
 * `npm run build` and as `prepack`, so `npm pack` / `npm publish` in a fresh clone ship dist.
 * `@piflow/policy`, `@piflow/models` and `@piflow/protocol` are workspace-only, so their code is bundled
 * in; `ky` stays a dependency and `onnxruntime-web` an optional peer, both external. Code shared by the root and
 * `./local` entries goes into one chunk, so both see the same error classes (instanceof works).
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { build } from 'esbuild'

const root = import.meta.dirname
const dist = join(root, 'dist')
rmSync(dist, { recursive: true, force: true })

await build({
  entryPoints: { index: join(root, 'src/index.ts'), local: join(root, 'src/local/index.ts') },
  outdir: dist,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  chunkNames: 'chunks/[name]-[hash]',
  external: ['ky', 'onnxruntime-web', 'onnxruntime-web/*'],
  sourcemap: true,
  legalComments: 'inline',
})

// Reports go to stderr: `npm pack --json` runs this as `prepack`, and its stdout must stay JSON.
execFileSync('npx', ['tsc', '-p', join(root, 'tsconfig.build.json')], { stdio: [0, 2, 2] })

// Declarations keep the source's `.ts` specifiers; published .d.ts must name the .js files.
const rewrite = (dir: string) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) rewrite(path)
    else if (name.endsWith('.d.ts')) {
      const text = readFileSync(path, 'utf8')
      writeFileSync(path, text.replace(/(from\s+'\.{1,2}\/[^']*?)\.ts'/g, "$1.js'"))
    }
  }
}
rewrite(dist)
writeFileSync(join(dist, 'local.d.ts'), "export * from './local/index.js'\n")

// Ship only the declarations the two entry points reach: internal modules (the ky wrapper, the ORT
// loader) stay out of the published types.
const reachable = new Set<string>()
const visit = (file: string) => {
  if (reachable.has(file)) return
  reachable.add(file)
  for (const [, spec] of readFileSync(file, 'utf8').matchAll(/from\s+'(\.{1,2}\/[^']+)\.js'/g)) {
    visit(resolve(dirname(file), `${spec}.d.ts`))
  }
}
visit(join(dist, 'index.d.ts'))
visit(join(dist, 'local.d.ts'))
const prune = (dir: string) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) prune(path)
    else if (name.endsWith('.d.ts') && !reachable.has(path)) rmSync(path)
  }
}
prune(dist)
console.error('built', dist)
