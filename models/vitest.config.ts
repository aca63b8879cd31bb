import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    name: 'models',
    include: ['js/**/*.test.ts'],
    environment: 'node',
    // the recipe smoke test spawns PyTorch on a shared 2-core machine
    testTimeout: 300_000,
    hookTimeout: 300_000,
    fileParallelism: false,
  },
})
