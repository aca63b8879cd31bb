import { defineConfig } from 'vitest/config'

// Each part owns its vitest config (node, workerd, browser); the root only lists them.
export default defineConfig({
  test: {
    projects: ['policy', 'models', 'protocol', 'backend', 'worker', 'sdk', 'test'].map(
      (dir) => `${dir}/vitest.config.ts`,
    ),
  },
})
