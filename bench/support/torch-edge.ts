/**
 * @module bench/support/torch-edge
 * Edge overhead of a whole generation on the PyTorch backend: the same 4-NFE generation of the tiny
 * fixture model (piflux-tiny, 64², CPU) requested N times straight from the backend (POST …/generate,
 * NDJSON read to `done`) and N times through the worker under `wrangler dev` (POST /v1/generations,
 * JSON; unseeded, so never a cache hit), interleaved so both series share the machine's noise. The
 * difference is the worker: auth, validation against the backend's entry, quota and Ledger Durable
 * Objects, the stream's checks (PNG header, sha256), R2 writes. Env: BENCH_EDGE_N (default 20).
 */
import { join } from 'node:path'
import {
  randomApiKey,
  randomSecret,
  startTorchBackend,
  startWorker,
  TORCH_FIXTURE_MANIFESTS,
} from '../../scripts/local-stack.ts'

const MODEL = 'piflux-tiny'
const PROMPT = 'a red apple on a table'

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]!

async function timed(work: () => Promise<void>): Promise<number> {
  const started = performance.now()
  await work()
  return performance.now() - started
}

/** Runs the comparison and prints its markdown table. */
export async function benchTorchEdge(): Promise<void> {
  const n = Number(process.env.BENCH_EDGE_N ?? 20)
  const secret = randomSecret()
  const apiKey = randomApiKey('bench')
  const torch = await startTorchBackend({
    secret,
    models: [join(TORCH_FIXTURE_MANIFESTS, `${MODEL}.json`)],
  })
  try {
    const worker = await startWorker({
      backends: [{ id: 'torch', url: torch.url, models: [MODEL] }],
      backendSecret: secret,
      devApiKey: apiKey,
      signingSecret: randomSecret(),
      vars: { PIFLOW_MODELS: MODEL, PIFLOW_RATE_LIMIT: '100000/60' },
    })
    try {
      let seed = 1
      const direct = async () => {
        const res = await fetch(`${torch.url}/v1/models/${MODEL}/generate`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Piflow-Backend-Secret': secret },
          body: JSON.stringify({ prompt: PROMPT, width: 64, height: 64, seed: seed++ }),
        })
        const text = await res.text()
        if (!res.ok || !text.includes('"type":"done"'))
          throw new Error(`direct: ${text.slice(-300)}`)
      }
      const edge = async () => {
        const res = await fetch(`${worker.url}/v1/generations`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ prompt: PROMPT, size: 64, model: MODEL }),
        })
        const body = (await res.json()) as { status?: string }
        if (!res.ok || body.status !== 'succeeded') throw new Error(`edge: ${JSON.stringify(body)}`)
      }
      // Warm both paths (the prompt cache, the worker's model entry, the isolate).
      for (let i = 0; i < 3; i++) {
        await direct()
        await edge()
      }
      const series = { direct: [] as number[], edge: [] as number[] }
      for (let i = 0; i < n; i++) {
        series.direct.push(await timed(direct))
        series.edge.push(await timed(edge))
      }
      const d = median(series.direct)
      const e = median(series.edge)
      console.log(
        `\n### Edge overhead, whole generation on the PyTorch backend (${MODEL}, 64², 4 NFE, CPU; ${n} rounds, interleaved)\n`,
      )
      console.log('| path | median ms | p90 ms | ratio to direct |')
      console.log('|---|---|---|---|')
      console.log(
        `| backend direct (POST …/generate, NDJSON) | ${d.toFixed(1)} | ${p90(series.direct).toFixed(1)} | 1.00 |`,
      )
      console.log(
        `| through the edge (POST /v1/generations, JSON) | ${e.toFixed(1)} | ${p90(series.edge).toFixed(1)} | ${(e / d).toFixed(2)} |`,
      )
      console.log(
        `\nedge overhead per generation: ${(e - d).toFixed(1)} ms median (wrangler dev's local simulators for R2 / Durable Objects included)`,
      )
    } finally {
      await worker.stop()
    }
  } finally {
    await torch.stop()
  }
}
