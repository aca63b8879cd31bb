/**
 * The Admission Durable Object on its own (workerd): FIFO slots within a capacity, a bounded queue,
 * positions that move as slots free up, and a dead worker's slot dropped once its lease has run out.
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'

const slotsFor = (name: string) => env.ADMISSION.get(env.ADMISSION.idFromName(name))

describe('Admission', () => {
  it('admits up to capacity, queues FIFO up to the limit, sheds past it, promotes on release', async () => {
    const slots = slotsFor('unit-fifo')
    expect(await slots.acquire('a', 2, 2)).toEqual({ kind: 'admitted' })
    expect(await slots.acquire('b', 2, 2)).toEqual({ kind: 'admitted' })
    expect(await slots.acquire('c', 2, 2)).toEqual({ kind: 'queued', position: 1 })
    expect(await slots.acquire('d', 2, 2)).toEqual({ kind: 'queued', position: 2 })
    const full = await slots.acquire('e', 2, 2)
    expect(full.kind).toBe('full')

    // d waits at position 2; a frees its slot: c runs, d moves up.
    const waiting = slots.wait('d', 2, 5000)
    await slots.release('a')
    expect(await waiting).toEqual({ kind: 'queued', position: 1 })
    expect(await slots.wait('c', 1, 0)).toEqual({ kind: 'admitted' })
    // A queued generation that leaves (canceled) frees its place without running.
    await slots.release('d')
    expect(await slots.acquire('f', 2, 2)).toEqual({ kind: 'queued', position: 1 })
    await Promise.all(['b', 'c', 'f'].map((id) => slots.release(id)))
  })

  it("drops a dead worker's slot once its lease has run out, so the queue moves on", async () => {
    const slots = slotsFor('unit-lease')
    expect(await slots.acquire('dead', 1, 4)).toEqual({ kind: 'admitted' })
    expect(await slots.acquire('next', 1, 4)).toEqual({ kind: 'queued', position: 1 })
    // Still leased: nothing moves.
    expect(await slots.wait('next', 1, 50)).toEqual({ kind: 'queued', position: 1 })
    // Its worker stopped renewing: the lease ends (as 20 s without a renewal would).
    await slots.renew('dead', Date.now() - 1)
    expect(await slots.wait('next', 1, 1000)).toEqual({ kind: 'admitted' })
    await slots.release('next')
  })
})
