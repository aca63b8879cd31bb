import { fileURLToPath } from 'node:url'
import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

// Worker tests run inside real workerd (miniflare) with the bindings of wrangler.toml: KV, R2, Durable
// Objects, static assets (models/). test/global-setup.ts starts a real backend process in Node and
// provides its URL, so generation tests reach real onnxruntime over HTTP.
export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: fileURLToPath(new URL('../wrangler.toml', import.meta.url)) },
      miniflare: {
        bindings: {
          PIFLOW_ENV: 'local',
          PIFLOW_DEV_API_KEY: inject<string>('devApiKey'),
          PIFLOW_BACKEND_SECRET: inject<string>('backendSecret'),
          PIFLOW_SIGNING_SECRET: 'test-signing-secret',
          PIFLOW_BACKENDS: JSON.stringify([
            { id: 'test-backend', url: inject<string>('backendUrl') },
          ]),
          PIFLOW_RATE_LIMIT: '1000/60',
        },
      },
    })),
  ],
  test: {
    name: 'worker',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
})
