/**
 * @module backend
 * Wires the parts: loads and verifies the models, creates the batcher and the app, serves it over
 * HTTP, and shuts down gracefully (stop accepting, finish in-flight work, release sessions).
 */

import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { createApp } from './app.ts'
import { createBatcher } from './batcher.ts'
import { createIntegratorPool } from './integrator-pool.ts'
import { type ExecutionProvider, loadModels } from './models.ts'
import { type BackendOptions, normalizeOptions } from './options.ts'

/** A running backend. */
export interface RunningBackend {
  /** `http://host:port` it listens on. */
  url: string
  port: number
  executionProvider: ExecutionProvider
  /** Ids of the models served. */
  models: string[]
  /** Stops accepting, waits (at most `graceMs`) for in-flight requests, releases sessions. */
  close(graceMs?: number): Promise<void>
}

/**
 * Loads the models in `options.modelsDir` (and `options.modelDirs`) and serves them on `host:port` (port 0 = a free one).
 * @example
 * const backend = await startBackend({ secret: 's', modelsDir: 'models' }, { port: 0 })
 */
export async function startBackend(
  options: BackendOptions,
  listen: { host?: string; port: number },
  signal?: AbortSignal,
): Promise<RunningBackend> {
  const normalized = normalizeOptions(options)
  const { log } = normalized
  const loaded = await loadModels(normalized.modelsDir, {
    modelDirs: normalized.modelDirs,
    executionProvider: normalized.executionProvider,
    intraOpThreads: normalized.intraOpThreads,
    log,
    ...(signal === undefined ? {} : { signal }),
  })
  if (loaded.models.size === 0) log('piflow-backend: WARNING no model loaded; /readyz reports 503')
  const batcher = createBatcher(normalized)
  const integrator = createIntegratorPool(normalized.integrateThreads)
  let draining = false
  const app = createApp({
    options: normalized,
    executionProvider: loaded.executionProvider,
    models: loaded.models,
    refused: loaded.refused,
    batcher,
    integrator,
    isDraining: () => draining,
  })

  const host = listen.host ?? '127.0.0.1'
  // serve() makes a plain node:http server unless told to use http2/https.
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: listen.port, hostname: host }, () =>
      resolve(s as Server),
    )
    s.once('error', reject)
  })
  const port = (server.address() as AddressInfo).port
  const urlHost = host.includes(':') ? `[${host}]` : host

  let closing: Promise<void> | undefined
  return {
    url: `http://${urlHost}:${port}`,
    port,
    executionProvider: loaded.executionProvider,
    models: [...loaded.models.keys()],
    close(graceMs = 10_000) {
      closing ??= (async () => {
        draining = true
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        // In-flight requests keep their connections busy until answered; idle keep-alive sockets
        // would hold close() open, so they are swept until the last busy one finishes.
        const sweep = setInterval(() => server.closeIdleConnections(), 50)
        server.closeIdleConnections()
        const grace = setTimeout(() => {
          log('piflow-backend: grace period over, closing remaining connections')
          server.closeAllConnections()
        }, graceMs)
        await closed
        clearInterval(sweep)
        clearTimeout(grace)
        await integrator.close()
        for (const model of loaded.models.values()) {
          for (const student of model.students.values()) await student.session.release()
        }
      })()
      return closing
    },
  }
}
