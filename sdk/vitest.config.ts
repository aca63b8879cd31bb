import { defineConfig } from 'vitest/config'

// Unit tests run in Node against real local HTTP servers; the browser suites live in test/browser.
export default defineConfig({
  test: { name: 'sdk', include: ['src/**/*.test.ts', 'test/**/*.test.ts'], testTimeout: 60_000 },
})
