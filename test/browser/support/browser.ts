/**
 * @module test/browser/support/browser
 * Headless system Chromium driven by playwright-core (never a downloaded browser), with the flags that
 * work on these machines; `webgpu: true` adds `--enable-unsafe-webgpu`, which gives a SwiftShader (CPU)
 * adapter: right for correctness, meaningless for speed.
 */
import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

export const CHROMIUM_PATH = process.env.PIFLOW_CHROMIUM ?? '/usr/bin/chromium'

/** Why browser suites cannot run here, or undefined when they can. */
export const browserUnavailable = (): string | undefined =>
  existsSync(CHROMIUM_PATH) ? undefined : `no Chromium at ${CHROMIUM_PATH} (set PIFLOW_CHROMIUM)`

export const launchChromium = (options: { webgpu?: boolean } = {}): Promise<Browser> =>
  chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      ...(options.webgpu ? ['--enable-unsafe-webgpu'] : []),
    ],
  })
