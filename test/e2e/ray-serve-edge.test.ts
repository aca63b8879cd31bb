/**
 * End to end through the edge with the PyTorch backend scaled by Ray Serve: the deployment of
 * torch-backend/serve.yaml on a real local Ray cluster on the CPU (2 replicas of the piflux-tiny
 * fixture model; piflow_torch/ray_serve_local.py), behind the worker under `wrangler dev`. One test:
 * the cluster takes ~40 s to come up. Needs the PyTorch environment of `scripts/setup.sh --test` (or
 * PIFLOW_TORCH_PYTHON), which includes Ray.
 */
import { decode } from 'fast-png'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  postGeneration,
  startTorchStack,
  type TorchStack,
  torchSkipReason,
} from '../support/stack.ts'

interface Generation {
  status: string
  integration: string
  backends: string[]
  images: { url: string; sha256: string }[]
}

let stack: TorchStack
const skip = torchSkipReason()

if (skip) {
  describe('edge → Ray Serve (PyTorch backend) end to end', () => {
    it.skip(skip, () => {})
  })
} else {
  beforeAll(async () => {
    stack = await startTorchStack({ models: ['piflux-tiny'], rayReplicas: 2 })
  }, 300_000)
  afterAll(() => stack?.stop(), 60_000)

  describe('edge → Ray Serve (PyTorch backend) end to end', () => {
    it('concurrent generations through the edge are served by the Ray Serve deployment', async () => {
      const generate = (seed: number) =>
        postGeneration(stack, { model: 'piflux-tiny', prompt: 'a red apple', seed, size: 64 })
      const answers = await Promise.all([1, 2, 3].map(generate))
      const generations: Generation[] = []
      for (const res of answers) {
        expect(res.status, await res.clone().text()).toBe(200)
        generations.push((await res.json()) as Generation)
      }
      for (const gen of generations) {
        expect(gen).toMatchObject({
          status: 'succeeded',
          integration: 'backend',
          backends: ['torch'],
        })
        const png = await fetch(gen.images[0]!.url)
        expect(png.status).toBe(200)
        const image = decode(new Uint8Array(await png.arrayBuffer()))
        expect([image.width, image.height]).toEqual([64, 64])
      }
      // Different seeds, different images.
      expect(new Set(generations.map((g) => g.images[0]!.sha256)).size).toBe(3)
    })
  })
}
