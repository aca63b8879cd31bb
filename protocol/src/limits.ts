/**
 * @module limits
 * The limits of a generation request, one constant each, whatever path serves it (edge API, browser).
 * Those the models package enforces itself are defined there and re-exported here.
 */
export { MAX_NFE, MAX_OUTPUT_SIZE, MAX_PROMPT_CHARS } from '@piflow/models'

/** Most images per request; an API key's `maxCount` may lower it. */
export const MAX_COUNT = 4

/** Seeds are unsigned 32-bit integers: image i of a request uses (seed + i) mod 2^32. */
export const MAX_SEED = 2 ** 32 - 1
