/**
 * What is published is what is tested: the root entry's size budget, and `npm pack` installed into a
 * scratch project outside the workspace, imported and used over real HTTP from a separate Node process.
 */
import { execFile, execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { build, type Plugin } from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sendJson, startScriptServer } from './testing/script-server.ts'

const sdkDir = join(import.meta.dirname, '..')

/** Bundles an entry the way a user's bundler would, minified, with everything it imports statically. */
const bundle = async (entry: string, plugins: Plugin[] = [], external: string[] = []) => {
  const result = await build({
    entryPoints: [join(sdkDir, entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    plugins,
    external,
  })
  const code = result.outputFiles[0]!.contents
  return { code: new TextDecoder().decode(code), gzipBytes: gzipSync(code, { level: 9 }).length }
}

/**
 * `fallback: 'local'` loads the local entry, and the first stream the streaming code, with a dynamic
 * import: separate, lazily fetched chunks (as the published build's splitting makes them).
 */
const lazyChunks: Plugin = {
  name: 'lazy-chunks',
  setup(b) {
    b.onResolve({ filter: /\/local\/index\.ts$/ }, () => ({ path: './local.js', external: true }))
    b.onResolve({ filter: /^\.\/stream\.ts$/ }, (args) =>
      args.kind === 'dynamic-import' ? { path: './stream.js', external: true } : undefined,
    )
  },
}

describe('root entry size', () => {
  it('has no onnxruntime or WebGPU code and stays within its budget', async () => {
    const own = await bundle('src/index.ts', [lazyChunks], ['ky'])
    const withKy = await bundle('src/index.ts', [lazyChunks])
    // The streaming chunk, loaded by the first stream, without what it shares with the entry.
    const streaming = await bundle('src/stream.ts', [], ['ky'])
    console.log(
      `root entry min+gzip: ${own.gzipBytes} B own code, ${withKy.gzipBytes} B including ky; ` +
        `streaming chunk (loaded by the first stream) ≤ ${streaming.gzipBytes} B`,
    )
    for (const forbidden of [
      'onnxruntime',
      'requestAdapter',
      'InferenceSession',
      'createWebGpuIntegrator',
    ]) {
      expect(withKy.code).not.toContain(forbidden)
    }
    // Budget of issue 7: 8 KB min+gzip for the root entry, ky included (ky 1.14: ~4.6 KB of it).
    expect(withKy.gzipBytes).toBeLessThanOrEqual(8 * 1024)
  })
})

describe('local entry size', () => {
  it('stays within 40 KB min+gzip without onnxruntime-web, with no zod classic or locales in it', async () => {
    // The WebGPU policy twin is a dynamic import (a chunk only WebGPU pages load); ORT is a peer.
    const lazyWebGpu: Plugin = {
      name: 'lazy-webgpu',
      setup(b) {
        b.onResolve({ filter: /^@piflow\/policy\/webgpu$/ }, () => ({
          path: './webgpu.js',
          external: true,
        }))
      },
    }
    const local = await bundle(
      'src/local/index.ts',
      [lazyWebGpu],
      ['onnxruntime-web', 'onnxruntime-web/*'],
    )
    console.log(`@piflow/sdk/local min+gzip without onnxruntime-web: ${local.gzipBytes} B`)
    // Classic zod's and its locales' messages (zod/mini + the English locale are expected).
    expect(local.code).not.toMatch(/Nieprawidłowe|Ungültige Eingabe/)
    expect(local.gzipBytes).toBeLessThanOrEqual(40 * 1024) // target of issue 16
  })
})

describe('npm pack', () => {
  let scratch = ''
  let packedFiles: string[] = []
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'piflow-sdk-pack-'))
    // As in a fresh clone: no dist. `npm pack` builds it (the `prepack` script).
    rmSync(join(sdkDir, 'dist'), { recursive: true, force: true })
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--pack-destination', scratch], {
        cwd: sdkDir,
        encoding: 'utf8',
      }),
    ) as { filename: string; files: { path: string }[] }[]
    packedFiles = packed[0]!.files.map((f) => f.path)
    const tarball = join(scratch, packed[0]!.filename)
    const app = join(scratch, 'app')
    mkdirSync(app)
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'app', type: 'module', private: true }),
    )
    // The shared flock serialises npm installs across everyone working in this tree.
    execFileSync(
      'flock',
      [
        '/tmp/piflow-npm.lock',
        'npm',
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        tarball,
      ],
      { cwd: app, stdio: 'pipe' },
    )
  }, 300_000)
  afterAll(() => rmSync(scratch, { recursive: true, force: true }))

  it('builds dist when packed (prepack), so the tarball ships the code and declarations', () => {
    for (const file of ['dist/index.js', 'dist/local.js', 'dist/index.d.ts', 'dist/local.d.ts']) {
      expect(packedFiles).toContain(file)
    }
    expect(packedFiles.some((f) => f.startsWith('src/'))).toBe(false)
  })

  it('installs with only published dependencies', () => {
    const installed = JSON.parse(
      readFileSync(join(scratch, 'app/node_modules/@piflow/sdk/package.json'), 'utf8'),
    )
    expect(Object.keys(installed.dependencies)).toEqual(['ky'])
    const lock = readFileSync(join(scratch, 'app/package-lock.json'), 'utf8')
    expect(lock).not.toMatch(/"node_modules\/@piflow\/(policy|models)"/)
    expect(lock).not.toContain('"link": true')
  })

  it('imports, creates a client and generates over HTTP from a plain Node project', async () => {
    const server = await startScriptServer((req, res) =>
      sendJson(
        res,
        200,
        { id: 'gen_9', model: 'piflow-emoji', seed: 3, nfe: 4, width: 1, height: 1, images: [] },
        { 'x-request-id': `seen ${req.headers.authorization}` },
      ),
    )
    try {
      const script = `
        import { createClient, PiflowError } from '@piflow/sdk'
        import * as local from '@piflow/sdk/local'
        const client = createClient({ baseUrl: process.argv[1], apiKey: 'pk_packed' })
        const result = await client.generate({ prompt: 'hi', seed: 3 })
        console.log(JSON.stringify({ id: result.data.id, requestId: result.requestId,
          local: typeof local.createLocalGenerator, error: typeof PiflowError }))`
      const out = await new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--input-type=module', '-e', script, server.url],
          { cwd: join(scratch, 'app') },
          (error: Error | null, stdout: string, stderr: string) =>
            error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
        )
      })
      expect(JSON.parse(out)).toEqual({
        id: 'gen_9',
        requestId: 'seen Bearer pk_packed',
        local: 'function',
        error: 'function',
      })
    } finally {
      await server.close()
    }
  })

  it('type-checks against the published declarations, which never mention ky', () => {
    const app = join(scratch, 'app')
    writeFileSync(
      join(app, 'main.ts'),
      `import { createClient, type Result, type Generation, ApiError, toBlob } from '@piflow/sdk'
       import { createLocalGenerator, type LocalGenerator } from '@piflow/sdk/local'
       const client = createClient({ baseUrl: 'http://x', retry: 2 })
       const r: Promise<Result<Generation>> = client.generate({ prompt: 'a', nfe: 4 })
       // Image bytes are ArrayBuffer-backed: a BlobPart under the DOM lib, no cast needed.
       const blobs = r.then(({ data }) => [new Blob([data.images[0]!.data!]), toBlob(data.images[0]!)])
       const g: LocalGenerator = createLocalGenerator({ providers: ['wasm'] })
       export { r, g, blobs, ApiError }`,
    )
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          lib: ['es2023', 'dom'],
          types: [],
        },
        files: ['main.ts'],
      }),
    )
    const tsc = join(sdkDir, '../node_modules/typescript/bin/tsc')
    try {
      execFileSync(process.execPath, [tsc, '-p', app], { encoding: 'utf8' })
    } catch (error) {
      throw new Error(`tsc failed:\n${(error as { stdout: string }).stdout}`)
    }
    const dts = ['index', 'client', 'errors', 'types', 'local/index', 'local/types'].map((f) =>
      readFileSync(join(app, `node_modules/@piflow/sdk/dist/${f}.d.ts`), 'utf8'),
    )
    for (const text of dts) expect(text).not.toMatch(/from ['"]ky['"]|\bKy[A-Z]\w*/)
  })
})
