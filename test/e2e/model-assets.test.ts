/**
 * scripts/stage-model-assets.ts, what the worker publishes: every file a manifest lists (the licence
 * `notice` too), from models/ and from extra model directories; a model whose files are not the ones
 * its manifest pins is left out rather than published under an immutable URL.
 */
import { createHash } from 'node:crypto'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { stageModelAssets } from '../../scripts/stage-model-assets.ts'
import { NOTICE_MODEL_ID, noticeModel, SHIPPED_MODEL_DIR } from '../support/model-dirs.ts'

let tmp: string
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex')

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'piflow-stage-'))
})
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

describe('stageModelAssets', () => {
  it('publishes every manifest file of models/ and of extra directories, the notice included', () => {
    const notice = noticeModel(join(tmp, 'extra'))
    const out = join(tmp, 'out-all')
    const ids = stageModelAssets({ outDir: out, extraDirs: [notice.dir] })
    expect(ids).toContain('piflow-emoji')
    expect(ids.at(-1)).toBe(NOTICE_MODEL_ID)
    for (const [id, dir] of [
      ['piflow-emoji', SHIPPED_MODEL_DIR],
      [NOTICE_MODEL_ID, notice.dir],
    ] as const) {
      const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
        files: Record<string, { path: string; sha256: string }>
      }
      const staged = readdirSync(join(out, id)).sort()
      const listed = ['manifest.json', ...Object.values(manifest.files).map((f) => f.path)].sort()
      // Only what the manifest lists: the shipped NOTICE, which its manifest does not list, stays out.
      expect(staged).toEqual(listed)
      for (const file of Object.values(manifest.files)) {
        expect(sha256(join(out, id, file.path))).toBe(file.sha256)
      }
    }
    expect(readFileSync(join(out, NOTICE_MODEL_ID, 'NOTICE'))).toEqual(
      readFileSync(join(SHIPPED_MODEL_DIR, 'NOTICE')),
    )
  })

  it('leaves out (and unpublishes) a model whose file is not the one its manifest pins', () => {
    const models = join(tmp, 'models')
    mkdirSync(models)
    cpSync(SHIPPED_MODEL_DIR, join(models, 'piflow-emoji'), { recursive: true })
    const out = join(tmp, 'out-mismatch')
    expect(stageModelAssets({ modelsDir: models, outDir: out })).toEqual(['piflow-emoji'])
    // An export in progress: the student rewritten, the manifest not yet.
    const student = join(models, 'piflow-emoji', 'student.onnx')
    const bytes = readFileSync(student)
    bytes[bytes.length - 1]! ^= 0xff
    writeFileSync(student, bytes)
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      expect(stageModelAssets({ modelsDir: models, outDir: out })).toEqual([])
      expect(String(warn.mock.calls[0]?.[0])).toMatch(/left out piflow-emoji .*sha256 mismatch/)
    } finally {
      warn.mockRestore()
    }
    expect(existsSync(join(out, 'piflow-emoji'))).toBe(false)
  })

  it('refuses an extra directory without a manifest, and two models with one id', () => {
    const empty = join(tmp, 'empty')
    mkdirSync(empty)
    expect(() => stageModelAssets({ outDir: join(tmp, 'out-x'), extraDirs: [empty] })).toThrow(
      /no manifest\.json/,
    )
    expect(() =>
      stageModelAssets({ outDir: join(tmp, 'out-y'), extraDirs: [SHIPPED_MODEL_DIR] }),
    ).toThrow(/two model directories have the id piflow-emoji/)
  })
})
