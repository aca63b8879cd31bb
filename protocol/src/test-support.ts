/**
 * @module test-support
 * The shipped default model for the protocol's tests (not exported from the package): the contract is
 * tested against a real manifest and tokenizer, not a made-up one.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createTokenizer, parseManifest } from '@piflow/models'

export const MODEL_DIR = fileURLToPath(new URL('../../models/piflow-emoji/', import.meta.url))
/** Reference outputs written by the training recipe (models/recipe/export.py). */
export const FIXTURES_DIR = fileURLToPath(new URL('../../models/fixtures/', import.meta.url))

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'))
}

/** The shipped model as the parts load it: id, parsed manifest, tokenizer. */
export function shippedModel() {
  const manifest = parseManifest(readJson(`${MODEL_DIR}manifest.json`))
  const tokenizer = createTokenizer(readJson(`${MODEL_DIR}${manifest.files.tokenizer!.path}`))
  return { id: manifest.id, manifest, tokenizer }
}
