"""The per-model batcher with the real fixture model behind it, plus injected faults (a batch that
raises, a slow accelerator): failures stay with their batch, queued requests time out or are cancelled
without running, and the model keeps serving."""

from __future__ import annotations

import asyncio
import time

from piflow_torch.pipeline.generate import run_batch
from piflow_torch.server.batcher import Job, ModelQueue, Stats
from support import runtime, spec


async def _terminal(job: Job, timeout: float = 120.0) -> list[dict]:
    events = []
    while True:
        event = await asyncio.wait_for(job.events.get(), timeout)
        events.append(event)
        if event["type"] in ("done", "error"):
            return events


def _queue(runner, **overrides) -> ModelQueue:
    options = dict(max_rows=8, max_wait_s=0.0, queue_limit=8, queue_timeout_s=60.0, stats=Stats())
    return ModelQueue("piflux-tiny", runner, **{**options, **overrides})


def test_a_failing_batch_fails_its_jobs_and_the_next_batch_runs():
    rt = runtime("piflux-tiny")
    calls = []

    def runner(batch, should_stop):
        calls.append([job.id for job in batch])
        if len(calls) == 1:
            raise RuntimeError("injected accelerator fault")
        return run_batch(rt, batch, should_stop)

    async def scenario():
        queue = _queue(runner)
        loop = asyncio.get_running_loop()
        first = Job("first", "piflux-tiny", spec(rt, width=32, height=32), loop)
        queue.submit(first)
        failed = await _terminal(first)
        second = Job("second", "piflux-tiny", spec(rt, width=32, height=32), loop)
        queue.submit(second)
        done = await _terminal(second)
        queue.close()
        return failed, done, queue.stats.snapshot()

    failed, done, stats = asyncio.run(scenario())
    assert failed[-1]["error"]["code"] == "generation_failed" and "injected" in failed[-1]["error"]["message"]
    assert done[-1]["type"] == "done" and sum(e["type"] == "image" for e in done) == 1
    assert stats["failed"] == 1 and stats["batches"] == 2


def test_queued_jobs_time_out_or_are_withdrawn_without_running():
    rt = runtime("piflux-tiny")
    ran = []

    def slow_runner(batch, should_stop):
        ran.extend(job.id for job in batch)
        time.sleep(1.5)  # a slow accelerator
        return run_batch(rt, batch, should_stop)

    async def scenario():
        queue = _queue(slow_runner, queue_timeout_s=0.5)
        loop = asyncio.get_running_loop()
        # different sizes: never one batch
        busy = Job("busy", "piflux-tiny", spec(rt, width=32, height=32), loop)
        late = Job("late", "piflux-tiny", spec(rt, width=48, height=32), loop)
        gone = Job("gone", "piflux-tiny", spec(rt, width=64, height=32), loop)
        for job in (busy, late, gone):
            queue.submit(job)
        await asyncio.sleep(0.2)
        gone.cancel("test")
        queue.withdraw(gone)
        results = [await _terminal(job) for job in (busy, late, gone)]
        queue.close()
        return results, queue.stats.snapshot()

    (busy, late, gone), stats = asyncio.run(scenario())
    assert busy[-1]["type"] == "done"
    assert late[-1]["error"]["code"] == "timeout" and gone[-1]["error"]["code"] == "cancelled"
    assert ran == ["busy"] and stats["timedOut"] == 1 and stats["queued"] == 0
