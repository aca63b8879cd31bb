/**
 * @module test/browser/support/demo-suite
 * What the SDK's browser suites against the real stack share: the built package (what npm ships),
 * the static server of the demo page, headless Chromium and the stack, started once per file and
 * stopped after it.
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll } from 'vitest'
import { launchChromium } from '../../support/chromium.ts'
import { type Stack, type StackOptions, startStack } from '../../support/stack.ts'
import { type StaticServer, startStaticServer } from './static-server.ts'

export interface DemoSuite {
  server: StaticServer
  browser: Browser
  stack: Stack
  /** The context of `page` (routes set on it serve every page opened in it). */
  context: BrowserContext
  /** The demo page, loaded and ready. */
  page: Page
}

/** Opens the demo page with `query` in `context` and waits until it is ready. */
export const openDemoPage = async (context: BrowserContext, serverUrl: string, query = '') => {
  const page = await context.newPage()
  await page.goto(`${serverUrl}/demo/index.html${query ? `?${query}` : ''}`)
  await page.waitForFunction(
    () => (window as { piflowDemo?: { ready: boolean } }).piflowDemo?.ready,
  )
  return page
}

/**
 * Registers the file's beforeAll / afterAll; the returned object is filled in by beforeAll.
 * `prepare` runs on the context before the page opens (e.g. to route a URL of the page's origin).
 */
export const useDemoSuite = (
  options: {
    stack?: StackOptions
    prepare?: (suite: Omit<DemoSuite, 'page'>) => Promise<unknown>
  } = {},
): DemoSuite => {
  const suite = {} as DemoSuite
  beforeAll(async () => {
    execFileSync('npx', ['tsx', join(import.meta.dirname, '../../../sdk/build.ts')], {
      stdio: 'pipe',
    })
    suite.server = await startStaticServer()
    suite.browser = await launchChromium()
    suite.stack = await startStack(options.stack)
    suite.context = await suite.browser.newContext()
    await options.prepare?.(suite)
    suite.page = await openDemoPage(suite.context, suite.server.url)
  }, 240_000)
  afterAll(async () => {
    await suite.browser?.close()
    await suite.server?.close()
    await suite.stack?.stop()
  })
  return suite
}
