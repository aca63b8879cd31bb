import { defineConfig } from 'vitest/config'

// The backend is tested as a real process over HTTP (real onnxruntime, real shipped model).
export default defineConfig({
  test: {
    name: 'backend',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Each file starts its own server processes; on 2 cores one file at a time is faster.
    fileParallelism: false,
  },
})
