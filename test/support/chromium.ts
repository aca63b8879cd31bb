/**
 * @module test/support/chromium
 * Headless system Chromium driven by playwright-core (never a downloaded browser), with the flags that
 * work on these machines (notes/toolchain.md); `webgpu: true` adds `--enable-unsafe-webgpu`, which gives
 * a SwiftShader (CPU) adapter where there is no GPU: right for correctness, meaningless for speed.
 * Shared by the SDK browser suite, the WebGPU conformance runner and the SDK bench.
 */
import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

export const CHROMIUM_PATH = process.env['PIFLOW_CHROMIUM'] ?? '/usr/bin/chromium'

/** Flags from notes/toolchain.md (without WebGPU). */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
]

/** Why browser suites cannot run here, or undefined when they can. */
export const browserUnavailable = (): string | undefined =>
  existsSync(CHROMIUM_PATH) ? undefined : `no Chromium at ${CHROMIUM_PATH} (set PIFLOW_CHROMIUM)`

/** Launches headless Chromium; `webgpu` exposes WebGPU (`--enable-unsafe-webgpu`). */
export const launchChromium = (options: { webgpu?: boolean } = {}): Promise<Browser> =>
  chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...(options.webgpu ? ['--enable-unsafe-webgpu'] : [])],
  })
