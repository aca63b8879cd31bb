/**
 * @module models
 * Loads models from their manifests: every file is checked against the manifest's byte size and sha256
 * before onnxruntime sees it (a mismatching model is refused with a log line, the others still load),
 * then one InferenceSession per student file. Also picks the execution provider.
 */

import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { type Manifest, parseManifest } from '@piflow/models'
import * as ort from 'onnxruntime-node'

/**
 * `webgpu` is onnxruntime's own Dawn (Vulkan on Linux): a GPU without CUDA libraries. Never picked by
 * `auto`, because onnxruntime cannot tell a GPU adapter from a software one (SwiftShader, llvmpipe),
 * which is ~100× slower than the CPU provider.
 */
export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu'

type ManifestFile = Manifest['files'][string]

/** One student ONNX file, ready to run. */
export interface StudentSession {
  fileKey: string
  file: ManifestFile
  session: ort.InferenceSession
}

/** A model that passed verification. */
export interface LoadedModel {
  id: string
  dir: string
  manifest: Manifest
  /** Student sessions by manifest file key. */
  students: Map<string, StudentSession>
  /** The student for `sampling.defaultNfe`. */
  defaultStudent: StudentSession
  /** Vocabulary size from the tokenizer file, so token ids can be range-checked; null if unknown. */
  vocabSize: number | null
}

/** A model that was found but not loaded, and why. */
export interface RefusedModel {
  id: string
  reason: string
}

export interface LoadResult {
  executionProvider: ExecutionProvider
  models: Map<string, LoadedModel>
  refused: RefusedModel[]
}

export interface LoadOptions {
  executionProvider: 'auto' | ExecutionProvider
  intraOpThreads: number
  log: (line: string) => void
  signal?: AbortSignal
}

/** A problem with one model's files; the model is refused, the server carries on. */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError'
}

/** The requested execution provider cannot run here; start-up fails. */
export class ExecutionProviderError extends Error {
  override name = 'ExecutionProviderError'
  constructor(provider: Exclude<ExecutionProvider, 'cpu'>, reason: string) {
    super(`execution provider ${provider} unavailable: ${reason}`)
  }
}

/**
 * Loads every `<modelsDir>/<id>/manifest.json`, then each of `modelDirs` (one model directory each,
 * e.g. an export under test that lives outside `modelsDir`). The execution provider is decided on the
 * first student file: CUDA or WebGPU when asked for (or CUDA for `auto` when onnxruntime can create a
 * CUDA session), CPU otherwise. A second model with an id already loaded is refused.
 */
export async function loadModels(
  modelsDir: string,
  options: LoadOptions & { modelDirs?: readonly string[] },
): Promise<LoadResult> {
  const root = resolve(modelsDir)
  const entries = await readdir(root, { withFileTypes: true }).catch((error: Error) => {
    throw new Error(`cannot read --models-dir ${root}: ${error.message}`)
  })
  const candidates = [
    ...entries
      .filter((entry) => entry.isDirectory())
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((entry) => ({ dir: join(root, entry.name), required: false })),
    // Named one by one: a missing manifest there is a refusal, not a directory to skip.
    ...(options.modelDirs ?? []).map((dir) => ({ dir: resolve(dir), required: true })),
  ]
  const models = new Map<string, LoadedModel>()
  const refused: RefusedModel[] = []
  let executionProvider: ExecutionProvider | undefined
  const createSession = async (path: string) => {
    if (executionProvider === undefined) {
      executionProvider = await pickExecutionProvider(path, options)
      options.log(`piflow-backend: execution provider ${executionProvider}`)
    }
    return ort.InferenceSession.create(path, sessionOptions(executionProvider, options))
  }

  for (const { dir, required } of candidates) {
    options.signal?.throwIfAborted()
    const name = basename(dir)
    const manifestPath = join(dir, 'manifest.json')
    if (!(await exists(manifestPath))) {
      if (!required) continue
      refused.push({ id: name, reason: `no manifest.json in ${dir}` })
      options.log(`piflow-backend: REFUSED model directory ${dir}: no manifest.json`)
      continue
    }
    try {
      const model = await loadModel(dir, manifestPath, createSession, options)
      if (models.has(model.id)) {
        for (const student of model.students.values()) await student.session.release()
        throw new ModelLoadError(`a model with id "${model.id}" is already loaded`)
      }
      models.set(model.id, model)
      options.log(
        `piflow-backend: loaded model "${model.id}" (${model.students.size} student file(s))`,
      )
    } catch (error) {
      if (error instanceof ExecutionProviderError) throw error
      const reason = error instanceof Error ? error.message : String(error)
      refused.push({ id: name, reason })
      options.log(`piflow-backend: REFUSED model "${name}": ${reason}`)
    }
  }
  return {
    executionProvider: executionProvider ?? (await pickExecutionProvider(null, options)),
    models,
    refused,
  }
}

async function loadModel(
  dir: string,
  manifestPath: string,
  createSession: (path: string) => Promise<ort.InferenceSession>,
  options: LoadOptions,
): Promise<LoadedModel> {
  let manifest: Manifest
  try {
    manifest = parseManifest(JSON.parse(await readFile(manifestPath, 'utf8')))
  } catch (error) {
    throw new ModelLoadError(`invalid manifest ${manifestPath}: ${(error as Error).message}`)
  }
  // Verify every file first: a model with one bad file is refused whole.
  for (const [key, file] of Object.entries(manifest.files)) {
    await verifyFile(dir, key, file, options.signal)
  }
  const students = new Map<string, StudentSession>()
  for (const [fileKey, file] of Object.entries(manifest.files)) {
    if (file.role !== 'student') continue
    const session = await createSession(resolveInside(dir, file.path))
    students.set(fileKey, { fileKey, file, session })
  }
  const defaultKey = manifest.sampling.perNfe[String(manifest.sampling.defaultNfe)]?.onnx
  const defaultStudent = defaultKey === undefined ? undefined : students.get(defaultKey)
  if (defaultStudent === undefined) {
    throw new ModelLoadError(`no student file for the default NFE ${manifest.sampling.defaultNfe}`)
  }
  return {
    id: manifest.id,
    dir,
    manifest,
    students,
    defaultStudent,
    vocabSize: await readVocabSize(dir, manifest),
  }
}

/** Byte size first (cheap), then the streamed sha256. */
export async function verifyFile(
  dir: string,
  key: string,
  file: Pick<ManifestFile, 'path' | 'sha256' | 'bytes'>,
  signal?: AbortSignal,
): Promise<void> {
  const path = resolveInside(dir, file.path)
  let size: number
  try {
    size = (await stat(path)).size
  } catch {
    throw new ModelLoadError(`file "${key}" (${file.path}) is missing`)
  }
  if (size !== file.bytes) {
    throw new ModelLoadError(
      `file "${key}" (${file.path}) is ${size} bytes, the manifest says ${file.bytes}`,
    )
  }
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, signal === undefined ? {} : { signal })) {
    hash.update(chunk as Buffer)
  }
  const actual = hash.digest('hex')
  if (actual !== file.sha256.toLowerCase()) {
    throw new ModelLoadError(
      `file "${key}" (${file.path}) sha256 mismatch: manifest ${file.sha256}, file ${actual}`,
    )
  }
}

/** Manifest paths are relative to the model directory and may not leave it. */
function resolveInside(dir: string, path: string): string {
  const full = resolve(dir, path)
  const rel = relative(dir, full)
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
    throw new ModelLoadError(`file path ${JSON.stringify(path)} leaves the model directory`)
  }
  return full
}

async function readVocabSize(dir: string, manifest: Manifest): Promise<number | null> {
  const file = manifest.files[manifest.text.tokenizer]
  if (file === undefined) return null
  try {
    const tokenizer = JSON.parse(await readFile(resolveInside(dir, file.path), 'utf8')) as {
      vocab?: unknown
    }
    return Array.isArray(tokenizer.vocab) ? tokenizer.vocab.length : null
  } catch {
    return null
  }
}

function sessionOptions(
  provider: ExecutionProvider,
  options: Pick<LoadOptions, 'intraOpThreads'>,
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    ...(options.intraOpThreads > 0 ? { intraOpNumThreads: options.intraOpThreads } : {}),
  }
}

/**
 * CUDA only if this onnxruntime build lists it AND a session can really be created with it (the
 * package lists CUDA even when its libraries were never installed). An explicit `cuda` that fails
 * is an error; `auto` falls back to CPU with a log line saying why.
 */
async function pickExecutionProvider(
  probePath: string | null,
  options: LoadOptions,
): Promise<ExecutionProvider> {
  const asked = options.executionProvider
  if (asked === 'cpu') return 'cpu'
  const gpu = asked === 'webgpu' ? 'webgpu' : 'cuda'
  const name = gpu === 'cuda' ? 'CUDA' : 'WebGPU'
  const listed = ort.listSupportedBackends().some((b) => b.name === gpu)
  let failure = listed ? '' : `this onnxruntime-node build has no ${name} provider`
  if (listed && gpu === 'cuda' && !cudaLibrariesInstalled()) {
    // Probing would only print onnxruntime's "cannot open shared object" noise.
    failure = 'CUDA libraries not installed (install onnxruntime-node with PIFLOW_ORT_CUDA=1)'
  } else if (listed && probePath !== null) {
    try {
      const probe = await ort.InferenceSession.create(probePath, { executionProviders: [gpu] })
      await probe.release()
      return gpu
    } catch (error) {
      failure = `${name} session creation failed: ${(error as Error).message.split('\n')[0]}`
    }
  } else if (listed) {
    failure = `no model to probe ${name} with`
  }
  if (asked !== 'auto') throw new ExecutionProviderError(gpu, failure)
  options.log(`piflow-backend: using CPU (${failure})`)
  return 'cpu'
}

/** onnxruntime-node loads its CUDA provider from a library next to its binding. */
function cudaLibrariesInstalled(): boolean {
  const binding = dirname(createRequire(import.meta.url).resolve('onnxruntime-node'))
  const dir = join(binding, '..', 'bin', 'napi-v6', process.platform, process.arch)
  return existsSync(join(dir, 'libonnxruntime_providers_cuda.so'))
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
