/**
 * Starts one real backend process (Node, onnxruntime) for the workerd test project and provides its
 * URL and secret to the pool options (vitest.config.ts). Runs in Node, outside workerd.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import {
  ROOT,
  randomApiKey,
  randomSecret,
  startBackend,
  startTorchBackend,
  TORCH_FIXTURE_MANIFESTS,
  TORCH_PYTHON,
} from '../../scripts/local-stack.ts'
import { stageModelAssets } from '../../scripts/stage-model-assets.ts'

export default async function setup(project: TestProject) {
  const backendSecret = randomSecret()
  project.provide('backendSecret', backendSecret)
  project.provide('devApiKey', randomApiKey('test'))
  stageModelAssets()
  // The PyTorch backend with its tiny fixture model, slowed per NFE so a cancel lands mid-generation
  // (test/remote-generation.test.ts); without its environment those tests skip with the reason.
  const torchAvailable = existsSync(TORCH_PYTHON)
  project.provide('torchAvailable', torchAvailable)
  project.provide('torchPython', TORCH_PYTHON)
  // Started while the ONNX backends start.
  const starting = torchAvailable
    ? startTorchBackend({
        secret: backendSecret,
        models: [join(TORCH_FIXTURE_MANIFESTS, 'piflux-tiny.json')],
        args: ['--debug-step-delay-ms', '300'],
      })
    : Promise.resolve(undefined)
  const torchStarted = async () => {
    const torch = await starting
    project.provide('torchUrl', torch?.url ?? 'http://127.0.0.1:9')
    return torch
  }
  // Without a shipped model the backend has nothing to serve; generation tests then skip with a reason.
  if (!existsSync(join(ROOT, 'models/piflow-emoji/manifest.json'))) {
    project.provide('backendUrl', 'http://127.0.0.1:9')
    project.provide('slowBackendUrl', 'http://127.0.0.1:9')
    project.provide('backendAvailable', false)
    const torch = await torchStarted()
    return async () => {
      await torch?.stop()
    }
  }
  // The slowed one (per onnxruntime run) keeps a generation running long enough to drop its stream
  // and resume it (test/resume.test.ts points a request's env at it).
  const [backend, slow, torch] = await Promise.all([
    startBackend({ secret: backendSecret }),
    startBackend({ secret: backendSecret, args: ['--debug-run-delay-ms', '300'] }),
    torchStarted(),
  ])
  project.provide('backendUrl', backend.url)
  project.provide('slowBackendUrl', slow.url)
  project.provide('backendAvailable', true)
  return async () => {
    await Promise.all([backend.stop(), slow.stop(), torch?.stop()])
  }
}
