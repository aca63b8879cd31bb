"""Per-model queue that groups concurrent generations into shared forwards, on one worker thread.

Grouping (backend/PROTOCOL.md "Batching"): requests of one model whose `GenerationSpec.batch_key()`
(width, height, NFE) agree run as one batch, up to `max_rows` images. The batcher is work-conserving:
when the model is idle the oldest queued request starts at once with whatever else of its key is
queued (after `max_wait_s`, default 0, if an operator sets a window); while a batch runs, the next one
forms. Requests are taken oldest first, so a request waits at most for the batches ahead of it, and at
most `queue_timeout_s` before it starts (then it ends with `timeout`).

Cancellation (by id or by the client disconnecting) ends the request's stream at once with
`cancelled`; a queued request never runs, a running one gets no further events and its rows are
dropped from the result. The batch itself stops at the next NFE boundary once all its requests are
cancelled (the sampler checks `should_stop` between NFEs).

A job's events cross from the worker thread to the request's event loop through
`loop.call_soon_threadsafe`, so the stream never blocks the GPU and a slow client never blocks others.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..pipeline.generate import BatchTimings
from ..pipeline.spec import GenerationSpec
from ..errors import Cancelled
from .errors import ProtocolError

log = logging.getLogger('piflow_torch.server')

TERMINAL = ('done', 'error')


@dataclass
class Stats:
    """Counters reported in /readyz (one object per server, shared by its models' queues)."""

    requests: int = 0
    batches: int = 0
    rowsRun: int = 0
    largestBatch: int = 0
    queued: int = 0
    rejectedQueueFull: int = 0
    cancelled: int = 0
    timedOut: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int):
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict:
        with self.lock:
            return {k: v for k, v in self.__dict__.items() if k != 'lock'}


def data_uri(png: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')


class Job:
    """One generation request: its spec, its cancellation flag and the stream of its events."""

    def __init__(self, job_id: str, model_id: str, spec: GenerationSpec, loop: asyncio.AbstractEventLoop):
        self.id = job_id
        self.model_id = model_id
        self.spec = spec
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.enqueued_at = time.monotonic()
        self.started_at: float | None = None
        self._loop = loop
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._finished = False
        self.on_finish: Callable[['Job'], None] | None = None

    # -- events (any thread) --

    def _emit(self, event: dict):
        self._loop.call_soon_threadsafe(self.events.put_nowait, {'id': self.id, **event})

    def finish(self, event: dict) -> bool:
        """Emits the terminal event (`done` or `error`) once; later calls do nothing."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
        self._emit(event)
        if self.on_finish is not None:
            self.on_finish(self)
        return True

    def fail(self, code: str, message: str) -> bool:
        return self.finish({'type': 'error', 'error': {'code': code, 'message': message}, 'requestId': self.id})

    @property
    def finished(self) -> bool:
        return self._finished

    # -- BatchMember (worker thread) --

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def on_progress(self, step: int, nfe: int, preview_png: bytes | None):
        event = {'type': 'progress', 'step': step, 'nfe': nfe}
        if preview_png is not None:
            event['preview'] = data_uri(preview_png)
            event['previewKind'] = 'state'
        self._emit(event)

    def on_image(self, index: int, seed: int, png: bytes, width: int, height: int):
        self._emit({'type': 'image', 'index': index, 'seed': seed, 'width': width, 'height': height,
                    'contentType': 'image/png', 'bytes': len(png), 'sha256': hashlib.sha256(png).hexdigest(),
                    'data': base64.b64encode(png).decode('ascii')})

    # -- control --

    def cancel(self, reason: str) -> bool:
        """Marks the job cancelled and ends its stream; False if it had already finished."""
        self._cancel.set()
        return self.fail('cancelled', f'generation cancelled ({reason})')


class ModelQueue:
    """The queue and worker thread of one model; `runner(batch, should_stop)` does the generation."""

    def __init__(self, model_id: str, runner: Callable[[list[Job], Callable[[], bool]], BatchTimings], *,
                 max_rows: int, max_wait_s: float, queue_limit: int, queue_timeout_s: float, stats: Stats):
        self.model_id = model_id
        self._runner = runner
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.queue_limit = queue_limit
        self.queue_timeout_s = queue_timeout_s
        self.stats = stats
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f'piflow-{model_id}', daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> int:
        """Queues `job`; returns how many requests are ahead of it. Raises ProtocolError 503 when full."""
        with self._cond:
            if self._closed:
                raise ProtocolError(503, 'shutting_down', 'the server is draining', headers={'Retry-After': '1'})
            if len(self._queue) >= self.queue_limit:
                self.stats.add(rejectedQueueFull=1)
                retry = max(1, round(self.queue_timeout_s / 4))
                raise ProtocolError(503, 'queue_full', f'{self.model_id} has {len(self._queue)} requests queued',
                                    headers={'Retry-After': str(retry)})
            self._queue.append(job)
            self.stats.add(requests=1, queued=1)
            self._cond.notify_all()
            return len(self._queue) - 1

    def withdraw(self, job: Job):
        """Drops a queued job (cancelled); a running one is left to its batch."""
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self.stats.add(queued=-1)

    def close(self):
        """Stops taking work: queued jobs end with `shutting_down`, a running batch completes."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self.stats.add(queued=-len(pending))
            self._cond.notify_all()
        for job in pending:
            job.fail('shutting_down', 'the server is draining')

    def join(self, timeout: float | None = None):
        self._thread.join(timeout)

    # -- worker thread --

    def _expire(self, now: float):
        """Ends jobs queued longer than the queue timeout (caller holds the lock)."""
        expired = [j for j in self._queue if now - j.enqueued_at > self.queue_timeout_s]
        for job in expired:
            self._queue.remove(job)
            self.stats.add(queued=-1, timedOut=1)
            job.fail('timeout', f'not started within {self.queue_timeout_s:g} s')

    def _rows_ready(self, key) -> int:
        return sum(j.spec.count for j in self._queue if j.spec.batch_key() == key)

    def _take_batch(self) -> list[Job] | None:
        with self._cond:
            while True:
                now = time.monotonic()
                self._expire(now)
                if self._queue:
                    break
                if self._closed:
                    return None
                self._cond.wait(timeout=1.0)
            head = self._queue[0]
            key = head.spec.batch_key()
            deadline = head.enqueued_at + self.max_wait_s
            while self._rows_ready(key) < self.max_rows and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(timeout=left)
                if head not in self._queue:  # cancelled while we waited
                    return []
            batch, rows = [], 0
            for job in list(self._queue):
                if job.spec.batch_key() == key and rows + job.spec.count <= self.max_rows:
                    batch.append(job)
                    rows += job.spec.count
                    self._queue.remove(job)
            self.stats.add(queued=-len(batch))
            return batch

    def _work(self):
        while (batch := self._take_batch()) is not None:
            live = [job for job in batch if not job.cancelled()]
            if live:
                self._run(live)

    def _run(self, batch: list[Job]):
        rows = sum(j.spec.count for j in batch)
        now = time.monotonic()
        for job in batch:
            job.started_at = now
            job._emit({'type': 'started', 'batchSize': len(batch), 'rows': rows})
        with self.stats.lock:
            self.stats.batches += 1
            self.stats.rowsRun += rows
            self.stats.largestBatch = max(self.stats.largestBatch, rows)
        try:
            timings = self._runner(batch, lambda: all(j.cancelled() for j in batch))
        except Cancelled:
            return  # every job already ended with `cancelled`
        except Exception as error:  # one failing batch must not stop the model
            log.exception('generation failed on %s', self.model_id)
            self.stats.add(failed=len(batch))
            for job in batch:
                job.fail('generation_failed', f'{type(error).__name__}: {error}')
            return
        for job in batch:
            job.finish({'type': 'done', 'batchSize': len(batch), 'rows': rows, 'timings': {
                'queueMs': round((job.started_at - job.enqueued_at) * 1e3, 3),
                'encodeMs': round(timings.encode_ms, 3),
                'stepMs': [round(t, 3) for t in timings.step_ms],
                'decodeMs': round(timings.decode_ms, 3),
                'totalMs': round((time.monotonic() - job.enqueued_at) * 1e3, 3)}})
