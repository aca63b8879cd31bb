import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ManifestError } from './errors.ts'
import { type Manifest, nfeSettings, parseManifest } from './manifest.ts'
import { MODEL_DIR, readJson } from './test-support.ts'

const raw = readJson(join(MODEL_DIR, 'manifest.json'))

function mutate(edit: (m: Manifest) => void): unknown {
  const copy = structuredClone(parseManifest(raw))
  edit(copy)
  return copy
}

function issuesOf(input: unknown): string[] {
  try {
    parseManifest(input)
  } catch (err) {
    expect(err).toBeInstanceOf(ManifestError)
    expect((err as ManifestError).code).toBe('invalid_manifest')
    return [...(err as ManifestError).issues]
  }
  throw new Error('expected ManifestError')
}

describe('piflow-emoji manifest', () => {
  const manifest = parseManifest(raw)

  it('parses and describes a GM student on a 3x32x32 latent', () => {
    expect(manifest.id).toBe('piflow-emoji')
    expect(manifest.policy).toEqual({ type: 'gm', k: 8 })
    expect(manifest.latent).toEqual({ channels: 3, height: 32, width: 32 })
    expect(nfeSettings(manifest).onnx).toBe('student')
  })

  it('lists every file with the sha256 and byte size it has on disk', () => {
    for (const [key, file] of Object.entries(manifest.files)) {
      const bytes = readFileSync(join(MODEL_DIR, file.path))
      expect(bytes.length, key).toBe(file.bytes)
      expect(createHash('sha256').update(bytes).digest('hex'), key).toBe(file.sha256)
    }
  })

  it('keeps the shipped ONNX weights small (<= 10 MB in all)', () => {
    const total = Object.values(manifest.files).reduce((n, f) => n + f.bytes, 0)
    expect(total).toBeLessThanOrEqual(10 * 1024 * 1024)
  })

  it('rejects broken cross-references with every issue listed', () => {
    expect(issuesOf(mutate((m) => (m.sampling.defaultNfe = 3)))).toContain(
      'sampling.defaultNfe: must be one of nfeOptions',
    )
    expect(issuesOf(mutate((m) => (m.sampling.perNfe['4'].onnx = 'teacher')))[0]).toMatch(
      /role teacher, expected student/,
    )
    expect(issuesOf(mutate((m) => (m.text.tokenizer = 'nope')))[0]).toMatch(/no file "nope"/)
    expect(issuesOf(mutate((m) => (m.files.student.path = '../x.onnx')))[0]).toMatch(
      /relative path/,
    )
    expect(issuesOf(mutate((m) => (m.files.student.sha256 = 'abc')))[0]).toMatch(/sha256/)
    expect(issuesOf(mutate((m) => (m.guidance.default = 99)))[0]).toMatch(/min <= default <= max/)
    expect(issuesOf(null).length).toBeGreaterThan(0)
  })

  it('accepts a notice file (attribution published with the weights) and no unknown role', () => {
    const notice = { path: 'NOTICE', sha256: 'a'.repeat(64), bytes: 10, inputs: [], outputs: [] }
    const withFile = (role: string) =>
      mutate((m) => ((m.files as Record<string, unknown>).notice = { ...notice, role }))
    const withNotice = withFile('notice')
    expect(parseManifest(withNotice).files.notice?.role).toBe('notice')
    expect(issuesOf(withFile('readme'))[0]).toMatch(/files\.notice\.role/)
  })

  it('refuses an NFE the model does not offer', () => {
    expect(() => nfeSettings(manifest, 3)).toThrow(ManifestError)
  })
})
