import { defineConfig } from 'vitest/config'

// Cross-part suites (conformance, end-to-end, browser) run in Node and drive real processes.
export default defineConfig({
  test: {
    name: 'test',
    include: ['**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Suites start servers, browsers and workerd; on 2 cores running them one file at a time is faster.
    fileParallelism: false,
  },
})
