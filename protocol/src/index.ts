/**
 * @module @piflow/protocol
 * The generation contract of piflow, one implementation shared by the edge worker, the Node backend and
 * the SDK (ARCHITECTURE.md §3): request limits and normalisation, the generation plan (latent shape,
 * seeded noise, sampling settings, per-NFE segments), the student's input and output tensors by name,
 * and the backend wire format (safetensors, step metadata, headers). No Node or DOM APIs: it runs in
 * workerd, Node and browsers alike.
 */
export type { BodyGuardOptions } from './body-guard.ts'
export { guardBody } from './body-guard.ts'
export type { FieldError, ProtocolErrorCode } from './errors.ts'
export { ProtocolError, RequestValidationError } from './errors.ts'
export type { GenerateEvent, GenerateModel, RequestOptions } from './generate-wire.ts'
export {
  generateEventSchema,
  generateModelSchema,
  generateRequestBody,
  generateRequestOptions,
} from './generate-wire.ts'
export {
  MAX_COUNT,
  MAX_NFE,
  MAX_OUTPUT_SIZE,
  MAX_PROMPT_CHARS,
  MAX_SEED,
} from './limits.ts'
export type { SamplingSettings } from './plan.ts'
export { initialLatents, latentShape, samplingFor, stepSegment } from './plan.ts'
export type {
  GenerationInput,
  GenerationParams,
  NormalizedGeneration,
  NormalizeOptions,
  RequestModel,
} from './request.ts'
export { manifestRequestOptions, normalizeGeneration } from './request.ts'
export type {
  SafetensorsArray,
  SafetensorsArrayByDtype,
  SafetensorsDtype,
  SafetensorsErrorCode,
  SafetensorsFile,
  SafetensorsLimits,
  SafetensorsTensor,
} from './safetensors.ts'
export { decodeSafetensors, encodeSafetensors, SafetensorsError } from './safetensors.ts'
export type { NamedTensors, PolicyOutputOptions } from './tensors.ts'
export { conditioningTensors, forwardInputs, policyOutputFrom } from './tensors.ts'
export type { ForwardMetadata, OutputTensor } from './wire.ts'
export {
  BATCH_SIZE_HEADER,
  CANCEL_ID_HEADER,
  checkRequestPrefix,
  decodeForwardResponse,
  decodeRequest,
  decodeStepResponse,
  EXECUTION_PROVIDER_HEADER,
  encodeForwardRequest,
  encodeForwardResponse,
  encodeStepRequest,
  encodeStepResponse,
  requestedNfe,
  SECRET_HEADER,
  stepSegmentOf,
  TENSORS_CONTENT_TYPE,
} from './wire.ts'
