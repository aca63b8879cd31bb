/**
 * @module manifest
 * Schema, types and parser of `models/<id>/manifest.json` (ARCHITECTURE.md §3). The backend, the worker and
 * the SDK all read a model through {@link parseManifest}, so a manifest that parses here is one every
 * part can run.
 */

import * as z from 'zod/mini'
import en from 'zod/v4/locales/en.js'
import { ManifestError } from './errors.ts'

// zod/mini (not classic zod): the same checks at a fraction of the size, since the browser SDK
// bundles this parser (@piflow/sdk/local's size budget); its English messages are passed per parse.
const positiveInt = (max?: number) =>
  z.int().check(z.positive(), ...(max === undefined ? [] : [z.lte(max)]))
const positiveNumber = (max?: number) =>
  z.number().check(z.positive(), ...(max === undefined ? [] : [z.lte(max)]))
const nonEmpty = () => z.string().check(z.minLength(1))

/** Most network evaluations a model may offer (and a request may ask for). */
export const MAX_NFE = 64
/** A dimension: a fixed size, or -1 / a name such as "B" for a dynamic (batch) axis. */
const dimSchema = z.union([z.int().check(z.gte(-1)), nonEmpty()])

const tensorSpecSchema = z.object({
  name: nonEmpty(),
  dtype: z.enum(['float32', 'float16', 'int64', 'int32']),
  shape: z.array(dimSchema),
})

const relativePath = nonEmpty().check(
  z.refine((p) => !p.startsWith('/') && !p.split(/[\\/]/).includes('..'), {
    message: 'must be a relative path inside the model directory',
  }),
)

const fileSchema = z.object({
  path: relativePath,
  sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits')),
  bytes: positiveInt(),
  /** `notice`: the licence/attribution text that must be published with the weights (CC-BY art). */
  role: z.enum(['student', 'teacher', 'tokenizer', 'notice']),
  inputs: z.array(tensorSpecSchema),
  outputs: z.array(tensorSpecSchema),
})

const gmPolicySchema = z.object({ type: z.literal('gm'), k: positiveInt(64) })
const dxPolicySchema = z.object({
  type: z.literal('dx'),
  n: positiveInt(64),
  mode: z.enum(['grid', 'polynomial']),
  segmentSize: positiveNumber(1),
  shift: positiveNumber(),
})

const perNfeSchema = z.object({
  shift: positiveNumber(),
  finalStepSizeScale: positiveNumber(1),
  temperature: z.union([positiveNumber(1), z.literal('auto')]),
  totalSubsteps: positiveInt(4096),
  onnx: nonEmpty(),
})

const manifestObject = z.object({
  schemaVersion: z.optional(z.literal(1)),
  id: z
    .string()
    .check(z.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'lowercase letters, digits and dashes')),
  name: nonEmpty(),
  license: nonEmpty(),
  attribution: nonEmpty(),
  policy: z.discriminatedUnion('type', [gmPolicySchema, dxPolicySchema]),
  latent: z.object({ channels: positiveInt(), height: positiveInt(), width: positiveInt() }),
  image: z.object({
    height: positiveInt(),
    width: positiveInt(),
    outputSizes: z.array(positiveInt(4096)).check(z.minLength(1)),
    valueRange: z.tuple([z.number(), z.number()]),
  }),
  sampling: z.object({
    nfeOptions: z.array(positiveInt(MAX_NFE)).check(z.minLength(1)),
    defaultNfe: positiveInt(),
    eps: positiveNumber(0.1),
    perNfe: z.record(z.string().check(z.regex(/^[1-9][0-9]*$/)), perNfeSchema),
  }),
  files: z.record(nonEmpty(), fileSchema),
  text: z.object({
    tokenizer: nonEmpty(),
    maxLength: positiveInt(512),
    padId: z.int().check(z.gte(0)),
    encoder: z.literal('in-network'),
  }),
  guidance: z.object({
    default: z.number(),
    min: z.number(),
    max: z.number(),
    input: z.nullable(nonEmpty()),
  }),
  /** Where the policy integration may run. */
  integration: z.array(z.enum(['backend', 'edge', 'browser'])).check(z.minLength(1)),
  /** The teacher used for the multi-step baseline (optional). */
  teacher: z.optional(
    z.object({
      onnx: nonEmpty(),
      steps: positiveInt(),
      shift: positiveNumber(),
      guidance: z.number(),
      cfg: z.optional(z.string()),
    }),
  ),
  /** Free-form provenance written by the training recipe. */
  training: z.optional(z.record(z.string(), z.unknown())),
})

/** English issue messages (zod/mini loads no locale by itself). */
export const zodMessages = { error: en().localeError }

type RawManifest = z.infer<typeof manifestObject>

/** Cross-references a plain object schema cannot express. */
function crossCheck(m: RawManifest, ctx: z.core.$RefinementCtx<RawManifest>): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message })
  const fileWithRole = (key: string, role: string, path: (string | number)[]) => {
    const file = m.files[key]
    if (!file) issue(path, `no file "${key}" in files`)
    else if (file.role !== role)
      issue(path, `file "${key}" has role ${file.role}, expected ${role}`)
  }
  if (!m.sampling.nfeOptions.includes(m.sampling.defaultNfe)) {
    issue(['sampling', 'defaultNfe'], 'must be one of nfeOptions')
  }
  for (const nfe of m.sampling.nfeOptions) {
    const entry = m.sampling.perNfe[String(nfe)]
    if (!entry) issue(['sampling', 'perNfe'], `missing entry for nfe ${nfe}`)
    else fileWithRole(entry.onnx, 'student', ['sampling', 'perNfe', String(nfe), 'onnx'])
  }
  fileWithRole(m.text.tokenizer, 'tokenizer', ['text', 'tokenizer'])
  if (m.teacher) fileWithRole(m.teacher.onnx, 'teacher', ['teacher', 'onnx'])
  const g = m.guidance
  if (!(g.min <= g.default && g.default <= g.max)) issue(['guidance'], 'need min <= default <= max')
  const [lo, hi] = m.image.valueRange
  if (!(lo < hi)) issue(['image', 'valueRange'], 'need low < high')
}

/** Zod schema of a model manifest (shape + cross-references). */
export const manifestSchema = manifestObject.check(z.superRefine(crossCheck))

/** A validated model manifest. */
export type Manifest = z.infer<typeof manifestSchema>
/** One entry of `manifest.files`. */
export type ManifestFile = Manifest['files'][string]
/** Input/output tensor description of an ONNX file. */
export type TensorSpec = z.infer<typeof tensorSpecSchema>
/** Per-NFE sampling defaults. */
export type NfeSettings = Manifest['sampling']['perNfe'][string]
/** GM or DX policy parameters. */
export type ManifestPolicy = Manifest['policy']

/**
 * Validates a manifest (already JSON-parsed) and returns it typed.
 * @throws {ManifestError} listing every schema or cross-reference problem.
 */
export function parseManifest(input: unknown): Manifest {
  const result = manifestSchema.safeParse(input, zodMessages)
  if (!result.success) {
    throw new ManifestError(
      result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    )
  }
  return result.data
}

/**
 * Per-NFE settings for `nfe` (default: the manifest's default NFE).
 * @throws {ManifestError} when the model does not offer that NFE.
 */
export function nfeSettings(
  manifest: Manifest,
  nfe: number = manifest.sampling.defaultNfe,
): NfeSettings {
  const entry = manifest.sampling.perNfe[String(nfe)]
  if (!manifest.sampling.nfeOptions.includes(nfe) || !entry) {
    throw new ManifestError([
      `sampling.perNfe: nfe ${nfe} not offered (options: ${manifest.sampling.nfeOptions.join(', ')})`,
    ])
  }
  return entry
}
