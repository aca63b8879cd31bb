/**
 * @module cases
 * Loads golden cases (fixtures/golden/README.md §1 format) from a directory: every case listed in
 * `index.json` plus any other `*.json` that carries a `kind`, so new case files are picked up without
 * editing the index. Tensors become Float64Array (with "-inf"/"inf"/"nan" decoded) or boolean[].
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { goldenDir } from '../support/fixtures.ts'

/** The case kinds fixtures/golden/README.md §3 documents. */
export const CASE_KINDS = [
  'gm_velocity',
  'dx_velocity',
  'rollout',
  'schedule',
  'sampling_loop',
  'train_sample_t',
  'piid_segment',
] as const
export type CaseKind = (typeof CASE_KINDS)[number]

/** A numeric tensor, row-major. */
export interface Tensor {
  kind: 'tensor'
  shape: number[]
  data: Float64Array
}

/** A boolean mask tensor. */
export interface BoolTensor {
  kind: 'bool'
  shape: number[]
  data: boolean[]
}

/** A decoded JSON value: tensors decoded, everything else as in the file. */
export type Value = Tensor | BoolTensor | number | string | boolean | null | Value[] | ValueRecord
export interface ValueRecord {
  [key: string]: Value
}

export interface Tolerance {
  rtol: number
  atol: number
}

export type Dtype = 'float64' | 'float32'

export interface GoldenCase {
  id: string
  kind: string
  description: string
  file: string
  inputs: ValueRecord
  expected: ValueRecord
  tolerance: Record<Dtype, Tolerance>
}

export const isTensor = (v: unknown): v is Tensor =>
  typeof v === 'object' && v !== null && (v as Tensor).kind === 'tensor'
export const isBoolTensor = (v: unknown): v is BoolTensor =>
  typeof v === 'object' && v !== null && (v as BoolTensor).kind === 'bool'

const NON_FINITE: Record<string, number> = {
  '-inf': Number.NEGATIVE_INFINITY,
  inf: Number.POSITIVE_INFINITY,
  '+inf': Number.POSITIVE_INFINITY,
  nan: Number.NaN,
}

/** Decodes one JSON number of a tensor (strings for non-finite values). */
export function decodeNumber(v: unknown, where: string): number {
  if (typeof v === 'number') return v
  if (typeof v === 'string' && v.toLowerCase() in NON_FINITE) return NON_FINITE[v.toLowerCase()]
  throw new Error(`${where}: expected a number or "-inf"/"inf"/"nan", got ${JSON.stringify(v)}`)
}

/** Decodes tensors (`{shape, data}`) recursively; checks data length against the shape. */
export function decodeValue(raw: unknown, where: string): Value {
  if (Array.isArray(raw)) return raw.map((v, i) => decodeValue(v, `${where}[${i}]`))
  if (raw === null || typeof raw !== 'object') {
    if (typeof raw === 'string' && raw.toLowerCase() in NON_FINITE)
      return NON_FINITE[raw.toLowerCase()]
    return raw as Value
  }
  const obj = raw as Record<string, unknown>
  if (Array.isArray(obj['shape']) && Array.isArray(obj['data'])) {
    const shape = obj['shape'] as number[]
    const data = obj['data'] as unknown[]
    const count = shape.reduce((a, b) => a * b, 1)
    if (!shape.every((d) => Number.isInteger(d) && d >= 0) || count !== data.length) {
      throw new Error(`${where}: shape [${shape}] does not match ${data.length} data values`)
    }
    if (data.length > 0 && data.every((d) => typeof d === 'boolean')) {
      return { kind: 'bool', shape, data: data as boolean[] }
    }
    return {
      kind: 'tensor',
      shape,
      data: Float64Array.from(data, (d, i) => decodeNumber(d, `${where}.data[${i}]`)),
    }
  }
  const out: ValueRecord = {}
  for (const [key, value] of Object.entries(obj)) out[key] = decodeValue(value, `${where}.${key}`)
  return out
}

/** Parses one case file's text. */
export function parseCase(text: string, file: string): GoldenCase {
  const json = JSON.parse(text) as Record<string, unknown>
  const where = path.basename(file)
  if (typeof json['kind'] !== 'string') throw new Error(`${where}: no "kind"`)
  const tolerance = json['tolerance'] as Record<string, Tolerance> | undefined
  for (const dtype of ['float64', 'float32'] as const) {
    const t = tolerance?.[dtype]
    if (!t || typeof t.rtol !== 'number' || typeof t.atol !== 'number') {
      throw new Error(`${where}: tolerance.${dtype} {rtol, atol} missing`)
    }
  }
  return {
    id: typeof json['id'] === 'string' ? json['id'] : path.basename(file, '.json'),
    kind: json['kind'],
    description: typeof json['description'] === 'string' ? json['description'] : '',
    file: where,
    inputs: decodeValue(json['inputs'] ?? {}, `${where}:inputs`) as ValueRecord,
    expected: decodeValue(json['expected'] ?? {}, `${where}:expected`) as ValueRecord,
    tolerance: tolerance as Record<Dtype, Tolerance>,
  }
}

/**
 * Every case in `dir`: the files `index.json` lists (in its order), then any other `*.json` whose top
 * level has a `kind`. Throws when the directory is missing or a listed file is unreadable.
 */
export function loadCases(dir: string = goldenDir()): GoldenCase[] {
  if (!existsSync(dir))
    throw new Error(`golden directory not found: ${dir} (set PIFLOW_GOLDEN_DIR)`)
  const files: string[] = []
  const indexPath = path.join(dir, 'index.json')
  if (existsSync(indexPath)) {
    const index = JSON.parse(readFileSync(indexPath, 'utf8')) as {
      cases?: { file?: string; id?: string }[]
    }
    for (const entry of index.cases ?? []) {
      const file = entry.file ?? `${entry.id}.json`
      if (!files.includes(file)) files.push(file)
    }
  }
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.json') || file === 'index.json' || files.includes(file)) continue
    try {
      const json = JSON.parse(readFileSync(path.join(dir, file), 'utf8'))
      if (json && typeof json === 'object' && typeof json.kind === 'string') files.push(file)
    } catch {
      // not a case file (or unparseable JSON without a kind): ignored, as the index does not list it
    }
  }
  return files.map((file) => parseCase(readFileSync(path.join(dir, file), 'utf8'), file))
}
