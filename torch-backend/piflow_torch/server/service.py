"""The served models, their queues and the registry of live generations (what the HTTP app calls into).

The same `Service` runs under uvicorn (`python -m piflow_torch.server`) and inside each Ray Serve
replica (`piflow_torch.ray_serve`); it knows nothing about HTTP beyond `ProtocolError`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from ..pipeline.generate import ModelRuntime, run_batch
from .batcher import Job, ModelQueue, Stats
from .errors import ProtocolError, model_not_found


@dataclass(frozen=True)
class ServiceOptions:
    """Batching and queue settings; defaults (and why) in options.py."""

    max_batch_rows: int | None = None  # None: each model's manifest limits.maxBatchSize
    max_wait_ms: float = 0.0
    queue_limit: int = 32
    queue_timeout_ms: float = 120_000.0
    debug_step_delay_ms: float = 0.0


class Service:
    def __init__(self, runtimes: list[ModelRuntime], options: ServiceOptions, execution_provider: str,
                 cancel_relay=None):
        """`cancel_relay`: where cancels for generations of other processes go (Ray Serve replicas)."""
        self.options = options
        self.cancel_relay = cancel_relay
        self.execution_provider = execution_provider
        self.runtimes = {r.id: r for r in runtimes}
        self.stats = Stats()
        self.draining = False
        self.started_at = time.time()
        self._jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self.queues = {r.id: self._queue_for(r) for r in runtimes}

    def _queue_for(self, runtime: ModelRuntime) -> ModelQueue:
        rows = self.options.max_batch_rows or runtime.manifest.limits.maxBatchSize
        delay_s = self.options.debug_step_delay_ms / 1e3

        def runner(batch, should_stop):
            return run_batch(runtime, batch, should_stop, step_delay_s=delay_s)

        return ModelQueue(runtime.id, runner, max_rows=max(rows, runtime.manifest.limits.maxCount),
                          max_wait_s=self.options.max_wait_ms / 1e3, queue_limit=self.options.queue_limit,
                          queue_timeout_s=self.options.queue_timeout_ms / 1e3, stats=self.stats)

    def runtime(self, model_id: str) -> ModelRuntime:
        runtime = self.runtimes.get(model_id)
        if runtime is None:
            raise model_not_found(model_id)
        return runtime

    def submit(self, model_id: str, job_id: str, spec, loop: asyncio.AbstractEventLoop) -> tuple[Job, int]:
        """Registers and queues a generation; its id must not belong to a live one."""
        if self.draining:
            raise ProtocolError(503, 'shutting_down', 'the server is draining', headers={'Retry-After': '1'})
        queue = self.queues[model_id]
        job = Job(job_id, model_id, spec, loop)
        with self._jobs_lock:
            if job_id in self._jobs:
                raise ProtocolError(409, 'duplicate_generation', f'generation {job_id!r} is already running')
            self._jobs[job_id] = job
        job.on_finish = self._forget
        try:
            position = queue.submit(job)
        except ProtocolError:
            self._forget(job)
            raise
        if self.cancel_relay is not None:
            self.cancel_relay.register(job_id)
        return job, position

    def _forget(self, job: Job):
        with self._jobs_lock:
            if self._jobs.get(job.id) is job:
                del self._jobs[job.id]
        self.queues[job.model_id].withdraw(job)
        if self.cancel_relay is not None:
            self.cancel_relay.unregister(job.id)

    def cancel(self, job_id: str, reason: str) -> bool:
        """Cancels a live generation; False when no such generation is live."""
        with self._jobs_lock:
            job = self._jobs.get(job_id)
        if job is None or not job.cancel(reason):
            return False
        self.stats.add(cancelled=1)
        return True

    async def cancel_anywhere(self, job_id: str, reason: str) -> bool:
        """`cancel`, or, for a generation another replica runs, through the relay."""
        if self.cancel(job_id, reason):
            return True
        return self.cancel_relay is not None and await self.cancel_relay.cancel_elsewhere(job_id)

    def cancel_job(self, job: Job, reason: str):
        if job.cancel(reason):
            self.stats.add(cancelled=1)

    def drain(self):
        self.draining = True
        for queue in self.queues.values():
            queue.close()

    def readiness(self) -> dict:
        status = 'draining' if self.draining else ('ready' if self.runtimes else 'no_models')
        prompt_cache = {rid: {'entries': len(r.encoder.cache), 'hits': r.encoder.cache.hits,
                              'misses': r.encoder.cache.misses} for rid, r in self.runtimes.items()}
        return {'status': status, 'executionProvider': self.execution_provider, 'models': list(self.runtimes),
                'batching': {'maxWaitMs': self.options.max_wait_ms, 'queueLimit': self.options.queue_limit,
                             'queueTimeoutMs': self.options.queue_timeout_ms,
                             'maxBatchRows': {rid: q.max_rows for rid, q in self.queues.items()}},
                'stats': self.stats.snapshot(), 'promptCache': prompt_cache}
