/**
 * @module test-support
 * Paths and helpers shared by the models tests (not exported from the package).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const MODELS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..')
export const REPO_ROOT = join(MODELS_DIR, '..')
export const MODEL_DIR = join(MODELS_DIR, 'piflow-emoji')
export const FIXTURES_DIR = join(MODELS_DIR, 'fixtures')
export const PYTHON = process.env.PIFLOW_PYTHON ?? '/usr/bin/python3'

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'))
}

/** Why the recipe's Python cannot run here (null when it can): used as a vitest skip reason. */
export function pythonSkipReason(modules: readonly string[] = ['torch', 'numpy']): string | null {
  if (!existsSync(PYTHON)) return `no Python at ${PYTHON} (set PIFLOW_PYTHON)`
  const probe = spawnSync(PYTHON, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8' })
  if (probe.status !== 0)
    return `${PYTHON} lacks ${modules.join('/')}: ${probe.stderr.trim().split('\n').pop()}`
  return null
}

/** Environment for the recipe's PyTorch processes on a shared 2-core box (see models/README.md). */
export function recipeEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    OMP_WAIT_POLICY: 'PASSIVE',
    GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296',
  }
}

/** Runs `python` (default: the recipe's) from the repository root with recipeEnv(). */
export function runPython(args: readonly string[], python: string = PYTHON) {
  return spawnSync(python, args, {
    cwd: REPO_ROOT,
    env: recipeEnv(),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  })
}

/** What a failed Python run said: its arguments and the tails of stdout and stderr. */
export function pythonOutput(args: readonly string[], run: ReturnType<typeof runPython>): string {
  return `${args.join(' ')}\n${run.stdout.slice(-2000)}\n${run.stderr.slice(-4000)}`
}
