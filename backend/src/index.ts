/**
 * @module @piflow/backend
 * The piflow inference backend: student forwards on onnxruntime-node behind the safetensors protocol
 * (PROTOCOL.md). Run it with `npx tsx backend/src/main.ts`.
 */

export { type AppContext, createApp } from './app.ts'
export { type RunningBackend, startBackend } from './backend.ts'
export { type Batcher, type BatcherStats, createBatcher } from './batcher.ts'
export { BackendError, type BackendErrorCode, InvalidInputError, QueueFullError } from './errors.ts'
export { type ExecutionProvider, type LoadedModel, loadModels, ModelLoadError } from './models.ts'
export { type BackendOptions, DEFAULT_OPTIONS, normalizeOptions } from './options.ts'
