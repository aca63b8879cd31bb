import { describe, expect, it } from 'vitest'
import { LatentError } from './errors.ts'
import { latentToRgba } from './image.ts'

describe('latentToRgba', () => {
  // 1 image, 3 channels, 2x2: R plane, G plane, B plane
  const x = new Float32Array([-1, 1, 0, 0.5, /* G */ 1, -1, 0, -0.5, /* B */ 0, 0, -2, 2])
  const shape = { channels: 3, height: 2, width: 2 }

  it('maps [-1, 1] to 0…255 with clamping, alpha 255', () => {
    const px = latentToRgba(x, shape, 2)
    expect(Array.from(px)).toEqual([
      0, 255, 128, 255, /* (0,1) */ 255, 0, 128, 255, /* (1,0) */ 128, 128, 0, 255, /* (1,1) */ 191,
      64, 255, 255,
    ])
  })

  it('upscales by nearest neighbour', () => {
    const px = latentToRgba(x, shape, 4)
    expect(px.length).toBe(4 * 4 * 4)
    const at = (r: number, c: number) => Array.from(px.slice((r * 4 + c) * 4, (r * 4 + c) * 4 + 4))
    expect(at(0, 0)).toEqual(at(1, 1))
    expect(at(0, 2)).toEqual([255, 0, 128, 255])
    expect(at(3, 3)).toEqual([191, 64, 255, 255])
  })

  it('selects an image from a batch', () => {
    const two = new Float32Array(24)
    two.fill(1, 12)
    expect(latentToRgba(two, { ...shape, batch: 2 }, 2, { index: 1 })[0]).toBe(255)
    expect(latentToRgba(two, { ...shape, batch: 2 }, 2, { index: 0 })[0]).toBe(128)
  })

  it('rejects bad shapes and sizes with LatentError', () => {
    expect(() => latentToRgba(x.subarray(1), shape, 2)).toThrow(LatentError)
    expect(() => latentToRgba(x, shape, 0)).toThrow(LatentError)
    expect(() => latentToRgba(x, shape, 1e6)).toThrow(LatentError)
    expect(() => latentToRgba(x, { ...shape, channels: 4, width: 1 }, 2)).toThrow(LatentError)
    expect(() => latentToRgba(x, shape, 2, { index: 1 })).toThrow(LatentError)
  })
})
