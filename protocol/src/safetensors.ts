/**
 * @module safetensors
 * The safetensors format (https://github.com/huggingface/safetensors), dependency-free: the wire format
 * of the backend protocol, shared by the backend, the worker and the SDK.
 *
 * Layout: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
 * `{"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, …}` padded
 * with spaces so the data starts 8-byte aligned, then the tensors' bytes, little-endian, row-major,
 * contiguous with no holes. Offsets are relative to the start of the data section.
 */

/** Element types of the format. F16/BF16 travel as raw bits (Uint16Array); BOOL as bytes 0/1. */
export type SafetensorsDtype =
  | 'BOOL'
  | 'U8'
  | 'I8'
  | 'I16'
  | 'U16'
  | 'F16'
  | 'BF16'
  | 'I32'
  | 'U32'
  | 'F32'
  | 'F64'
  | 'I64'
  | 'U64'

/** The typed array each dtype decodes to (and must be given as when encoding). */
export interface SafetensorsArrayByDtype {
  BOOL: Uint8Array
  U8: Uint8Array
  I8: Int8Array
  I16: Int16Array
  U16: Uint16Array
  F16: Uint16Array
  BF16: Uint16Array
  I32: Int32Array
  U32: Uint32Array
  F32: Float32Array
  F64: Float64Array
  I64: BigInt64Array
  U64: BigUint64Array
}

export type SafetensorsArray = SafetensorsArrayByDtype[SafetensorsDtype]

/** One tensor: dtype, shape (row-major, `[]` = scalar) and its elements. */
export type SafetensorsTensor = {
  [D in SafetensorsDtype]: { dtype: D; shape: number[]; data: SafetensorsArrayByDtype[D] }
}[SafetensorsDtype]

export interface SafetensorsFile {
  tensors: Record<string, SafetensorsTensor>
  /** `__metadata__`: string → string (empty object when absent). */
  metadata: Record<string, string>
}

/** Bounds checked before anything proportional to the input is allocated. */
export interface SafetensorsLimits {
  /** Largest JSON header accepted. @default 1 MiB (the reference library allows 100 MB) */
  maxHeaderBytes?: number
  /** @default 1024 */
  maxTensors?: number
  /** Largest rank accepted. @default 8 */
  maxRank?: number
}

export type SafetensorsErrorCode =
  | 'header_too_small'
  | 'header_too_large'
  | 'header_out_of_bounds'
  | 'invalid_header'
  | 'too_many_tensors'
  | 'invalid_dtype'
  | 'invalid_shape'
  | 'invalid_offsets'
  | 'size_mismatch'
  | 'invalid_metadata'
  | 'invalid_tensor'

/** Malformed safetensors bytes (decode) or tensors that cannot be written (encode). */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError' as const
  readonly code: SafetensorsErrorCode
  /** The offending tensor, when one is to blame. */
  readonly tensor: string | undefined

  constructor(code: SafetensorsErrorCode, message: string, tensor?: string) {
    super(message)
    this.code = code
    this.tensor = tensor
  }
}

const DTYPES: Record<SafetensorsDtype, { bytes: number; rank: number }> = {
  // rank = position in the reference library's Dtype enum: it writes tensors in descending rank, so
  // larger elements come first and every tensor starts aligned to its element size.
  BOOL: { bytes: 1, rank: 0 },
  U8: { bytes: 1, rank: 4 },
  I8: { bytes: 1, rank: 5 },
  I16: { bytes: 2, rank: 9 },
  U16: { bytes: 2, rank: 10 },
  F16: { bytes: 2, rank: 11 },
  BF16: { bytes: 2, rank: 12 },
  I32: { bytes: 4, rank: 13 },
  U32: { bytes: 4, rank: 14 },
  F32: { bytes: 4, rank: 15 },
  F64: { bytes: 8, rank: 16 },
  I64: { bytes: 8, rank: 17 },
  U64: { bytes: 8, rank: 18 },
}

const ARRAY_CTORS = {
  BOOL: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  I16: Int16Array,
  U16: Uint16Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
  F32: Float32Array,
  F64: Float64Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
} as const

const DEFAULT_LIMITS: Required<SafetensorsLimits> = {
  maxHeaderBytes: 1 << 20,
  maxTensors: 1024,
  maxRank: 8,
}

const METADATA_KEY = '__metadata__'

// Typed arrays use the platform's byte order and the format is little-endian; every platform Node,
// browsers and workerd run on is little-endian, so views are taken without swapping.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** True when `name` is a known safetensors dtype. */
function isSafetensorsDtype(name: unknown): name is SafetensorsDtype {
  return typeof name === 'string' && Object.hasOwn(DTYPES, name)
}

/**
 * Encodes tensors (and optional string metadata) as safetensors bytes, byte-for-byte as the reference
 * library writes them (tensors ordered by dtype then name, header padded to 8 bytes).
 * @throws SafetensorsError `INVALID_TENSOR` / `INVALID_SHAPE` / `SIZE_MISMATCH` / `INVALID_METADATA`
 * @example
 * const bytes = encodeSafetensors({ sigma: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } })
 */
export function encodeSafetensors(
  tensors: Record<string, SafetensorsTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  assertLittleEndian()
  const entries = Object.entries(tensors)
  for (const [name, tensor] of entries) validateForEncode(name, tensor)
  entries.sort(([a, ta], [b, tb]) => {
    const byDtype = DTYPES[tb.dtype].rank - DTYPES[ta.dtype].rank
    return byDtype !== 0 ? byDtype : a < b ? -1 : a > b ? 1 : 0
  })

  const header: Record<string, unknown> = {}
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new SafetensorsError('invalid_metadata', `metadata "${key}" must be a string`)
      }
    }
    header[METADATA_KEY] = metadata
  }
  let offset = 0
  for (const [name, tensor] of entries) {
    const end = offset + tensor.data.byteLength
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, end] }
    offset = end
  }

  const json = new TextEncoder().encode(JSON.stringify(header))
  const headerLength = Math.ceil(json.length / 8) * 8
  const out = new Uint8Array(8 + headerLength + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true)
  out.set(json, 8)
  out.fill(0x20, 8 + json.length, 8 + headerLength)
  let cursor = 8 + headerLength
  for (const [, tensor] of entries) {
    const { buffer, byteOffset, byteLength } = tensor.data
    out.set(new Uint8Array(buffer, byteOffset, byteLength), cursor)
    cursor += byteLength
  }
  return out
}

/**
 * The header length a file's first 8 bytes declare, checked against the header limit and the file's
 * total size (`Infinity` when not yet known). The first check of {@link decodeSafetensors}, on its own
 * so that a reader of a streamed body can refuse it after 8 bytes instead of buffering the rest.
 * @throws SafetensorsError `header_too_small`, `header_too_large` or `header_out_of_bounds`
 */
export function safetensorsHeaderLength(
  prefix: Uint8Array,
  totalBytes: number,
  limits?: SafetensorsLimits,
): number {
  const { maxHeaderBytes } = { ...DEFAULT_LIMITS, ...limits }
  if (prefix.byteLength < 8 || totalBytes < 8) {
    const got = Math.min(prefix.byteLength, totalBytes)
    throw new SafetensorsError('header_too_small', `need at least 8 bytes, got ${got}`)
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8)
  const headerLength64 = view.getBigUint64(0, true)
  if (headerLength64 > BigInt(maxHeaderBytes)) {
    throw new SafetensorsError(
      'header_too_large',
      `header of ${headerLength64} bytes exceeds the limit of ${maxHeaderBytes}`,
    )
  }
  const headerLength = Number(headerLength64)
  if (8 + headerLength > totalBytes) {
    throw new SafetensorsError(
      'header_out_of_bounds',
      `header of ${headerLength} bytes runs past the end of a ${totalBytes}-byte buffer`,
    )
  }
  return headerLength
}

/**
 * Decodes safetensors bytes. Everything the header claims is validated (size limits, dtypes, shapes,
 * offsets in bounds, contiguous and non-overlapping, shape × dtype = byte length) before any tensor is
 * allocated. Tensors whose bytes are aligned are zero-copy views of `bytes`; the others are copies.
 * @throws SafetensorsError with a stable `code` on malformed input
 */
export function decodeSafetensors(bytes: Uint8Array, limits?: SafetensorsLimits): SafetensorsFile {
  assertLittleEndian()
  const { maxTensors, maxRank } = { ...DEFAULT_LIMITS, ...limits }
  const headerLength = safetensorsHeaderLength(bytes, bytes.byteLength, limits)
  const header = parseHeader(bytes.subarray(8, 8 + headerLength))
  const data = bytes.subarray(8 + headerLength)

  const metadata = parseMetadata(header[METADATA_KEY])
  const names = Object.keys(header).filter((key) => key !== METADATA_KEY)
  if (names.length > maxTensors) {
    throw new SafetensorsError(
      'too_many_tensors',
      `${names.length} tensors exceed the limit of ${maxTensors}`,
    )
  }
  const infos = names.map((name) => parseTensorInfo(name, header[name], maxRank))

  // The reference library's rule: sorted by offset, the tensors tile the data section exactly.
  const sorted = [...infos].sort((a, b) => a.begin - b.begin || a.end - b.end)
  let expected = 0
  for (const info of sorted) {
    if (info.begin !== expected) {
      const problem = info.begin < expected ? 'overlaps the previous tensor' : 'leaves a gap'
      throw new SafetensorsError(
        'invalid_offsets',
        `tensor "${info.name}" data_offsets [${info.begin}, ${info.end}] ${problem}`,
        info.name,
      )
    }
    expected = info.end
  }
  if (expected !== data.byteLength) {
    throw new SafetensorsError(
      'invalid_offsets',
      `tensors cover ${expected} bytes but the data section has ${data.byteLength}`,
    )
  }

  const tensors: Record<string, SafetensorsTensor> = {}
  for (const info of infos) {
    tensors[info.name] = {
      dtype: info.dtype,
      shape: info.shape,
      data: toTypedArray(info.dtype, data.subarray(info.begin, info.end)),
    } as SafetensorsTensor
  }
  return { tensors, metadata }
}

interface TensorInfo {
  name: string
  dtype: SafetensorsDtype
  shape: number[]
  begin: number
  end: number
}

function parseHeader(raw: Uint8Array): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(raw))
  } catch (error) {
    throw new SafetensorsError(
      'invalid_header',
      `header is not UTF-8 JSON: ${(error as Error).message}`,
    )
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SafetensorsError('invalid_header', 'header must be a JSON object')
  }
  return parsed as Record<string, unknown>
}

function parseMetadata(value: unknown): Record<string, string> {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SafetensorsError('invalid_metadata', '__metadata__ must be an object of strings')
  }
  const out: Record<string, string> = {}
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') {
      throw new SafetensorsError('invalid_metadata', `__metadata__."${key}" must be a string`)
    }
    out[key] = item
  }
  return out
}

function parseTensorInfo(name: string, value: unknown, maxRank: number): TensorInfo {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SafetensorsError('invalid_header', `tensor "${name}" must be an object`, name)
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>
  if (!isSafetensorsDtype(dtype)) {
    throw new SafetensorsError(
      'invalid_dtype',
      `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`,
      name,
    )
  }
  if (
    !Array.isArray(shape) ||
    shape.length > maxRank ||
    !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new SafetensorsError(
      'invalid_shape',
      `tensor "${name}" shape must be at most ${maxRank} non-negative integers`,
      name,
    )
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new SafetensorsError(
      'invalid_offsets',
      `tensor "${name}" data_offsets must be [begin, end] with 0 ≤ begin ≤ end`,
      name,
    )
  }
  const [begin, end] = offsets as [number, number]
  const byteLength = checkedByteLength(name, dtype, shape)
  if (byteLength !== end - begin) {
    throw new SafetensorsError(
      'size_mismatch',
      `tensor "${name}" ${dtype}[${shape.join(',')}] needs ${byteLength} bytes, data_offsets give ${end - begin}`,
      name,
    )
  }
  return { name, dtype, shape: shape as number[], begin, end }
}

/** shape × element size, refusing products past 2^53 instead of wrapping. */
function checkedByteLength(name: string, dtype: SafetensorsDtype, shape: number[]): number {
  let n = DTYPES[dtype].bytes
  for (const d of shape) {
    n *= d
    if (!Number.isSafeInteger(n)) {
      throw new SafetensorsError('size_mismatch', `tensor "${name}" is impossibly large`, name)
    }
  }
  return n
}

function toTypedArray(dtype: SafetensorsDtype, bytes: Uint8Array): SafetensorsArray {
  const Ctor = ARRAY_CTORS[dtype]
  const length = bytes.byteLength / Ctor.BYTES_PER_ELEMENT
  if (bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) {
    return new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, length)
  }
  // Unaligned (a producer that does not order by dtype): copy into fresh, aligned memory.
  const copy = new Ctor(length)
  new Uint8Array(copy.buffer).set(bytes)
  return copy
}

function validateForEncode(name: string, tensor: SafetensorsTensor): void {
  if (name === METADATA_KEY) {
    throw new SafetensorsError('invalid_tensor', `"${METADATA_KEY}" is reserved`, name)
  }
  if (!isSafetensorsDtype(tensor?.dtype)) {
    throw new SafetensorsError('invalid_dtype', `tensor "${name}" has an unknown dtype`, name)
  }
  const Ctor = ARRAY_CTORS[tensor.dtype]
  if (!(tensor.data instanceof Ctor)) {
    throw new SafetensorsError(
      'invalid_tensor',
      `tensor "${name}" (${tensor.dtype}) needs a ${Ctor.name}`,
      name,
    )
  }
  if (
    !Array.isArray(tensor.shape) ||
    !tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new SafetensorsError(
      'invalid_shape',
      `tensor "${name}" shape must be non-negative integers`,
      name,
    )
  }
  const byteLength = checkedByteLength(name, tensor.dtype, tensor.shape)
  if (byteLength !== tensor.data.byteLength) {
    throw new SafetensorsError(
      'size_mismatch',
      `tensor "${name}" shape [${tensor.shape.join(',')}] needs ${byteLength} bytes, data has ${tensor.data.byteLength}`,
      name,
    )
  }
}

function assertLittleEndian(): void {
  if (!LITTLE_ENDIAN) {
    throw new SafetensorsError('invalid_tensor', 'big-endian platforms are not supported')
  }
}
