"""The request queue: concurrent requests gathered into batches for one worker thread.

A model decodes a batch of prompts in little more time than one prompt (the weights are read once
per step for every row), so requests that arrive together should be decoded together, not one
after another behind a lock. Every request becomes a `Job` with a key: only jobs with equal keys
(the same generation settings) can share a `generate` call. One thread moves arriving jobs into a
pool, takes the key of the oldest job there, waits until that job is `max_wait` seconds old for
more of its kind to arrive (never once `batch_size` of them are there), and hands up to
`batch_size` of them to `run`. Jobs of other keys stay in the pool, where the jobs arriving
meanwhile join them: while one batch generates, the next ones fill, so under load batches are
full without any waiting, and taking the oldest job's key first keeps every kind of request moving.

Only that thread runs the model, so nothing is ever generated concurrently on it. A job whose
client has gone away before its batch starts is dropped (its future was cancelled). Results travel
back through `concurrent.futures.Future`s, which the asyncio handlers await with
`asyncio.wrap_future`.

This is our own code: FastAPI and uvicorn serve requests concurrently but have no batching, and
the serving libraries that batch (vLLM, TGI, Ray Serve) bring their own engines or servers.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqltune.serve.errors import ApiError

Runner = Callable[[Hashable, list[Any]], list[Any]]  # (key, payloads) -> a result or exception each


@dataclass
class Job:
    key: Hashable  # jobs with equal keys may be generated together
    payload: Any
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class BatchStats:
    """What the queue did, for `GET /health` and the load benchmark (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0  # jobs submitted
        self.dropped = 0  # jobs whose client left before their batch started
        self.generate_calls = 0
        self.generated = 0  # jobs answered by those calls
        self.batch_sizes: Counter[int] = Counter()  # jobs per generate call -> how many calls
        self.busy_seconds = 0.0

    def submitted(self) -> None:
        with self._lock:
            self.requests += 1

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def generate_call(self, jobs: int, seconds: float) -> None:
        """One engine `generate` call that answered `jobs` requests."""
        with self._lock:
            self.generate_calls += 1
            self.generated += jobs
            self.batch_sizes[jobs] += 1
            self.busy_seconds += seconds

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "dropped": self.dropped,
                "generate_calls": self.generate_calls,
                "generated": self.generated,
                "mean_batch": round(self.generated / self.generate_calls, 3) if self.generate_calls else None,
                "batch_sizes": {str(size): n for size, n in sorted(self.batch_sizes.items())},
                "busy_seconds": round(self.busy_seconds, 3),
            }


class BatchQueue:
    """Jobs in, batches of compatible jobs out to `run` on one worker thread (see the module docstring)."""

    def __init__(
        self,
        run: Runner,
        batch_size: int,
        max_wait: float,
        max_queue: int,
        stats: BatchStats | None = None,
    ) -> None:
        self.run = run
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.stats = stats or BatchStats()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._stopping = False
        self._pooled = 0  # jobs taken off the queue that wait in the worker's pool
        self._thread = threading.Thread(target=self._loop, name="sqltune-serve-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop after the jobs already queued; wait for the thread at most `timeout` seconds."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        """Requests waiting for their batch (approximate while the worker moves them)."""
        return self._queue.qsize() + self._pooled

    def submit(self, key: Hashable, payload: Any) -> Future:
        """Queue a job; its future gets the result (or the exception) once its batch has run."""
        job = Job(key, payload)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ApiError(
                503, f"the server is busy: {self._queue.maxsize} requests are waiting; try again shortly"
            ) from None
        self.stats.submitted()
        return job.future

    def _take(self, pool: dict[Hashable, deque[Job]], block: bool, timeout: float | None = None) -> bool:
        """Move one arriving job into the pool (waiting for it when `block`); False when none came
        or the stop signal did (then `self._stopping` is set)."""
        try:
            job = self._queue.get(timeout=timeout) if block else self._queue.get_nowait()
        except queue.Empty:
            return False
        if job is None:
            self._stopping = True
            return False
        pool.setdefault(job.key, deque()).append(job)
        self._pooled += 1
        return True

    def _next_batch(self, pool: dict[Hashable, deque[Job]]) -> tuple[Hashable, list[Job]]:
        """The oldest job's key and up to `batch_size` of its jobs, once that many are there or the
        oldest has waited `max_wait` (see the module docstring)."""
        while self._pooled < self._queue.maxsize and self._take(pool, block=False):
            pass
        key = min(pool, key=lambda k: pool[k][0].arrived)
        deadline = pool[key][0].arrived + self.max_wait
        while len(pool[key]) < self.batch_size and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._take(pool, block=True, timeout=remaining):
                break
        jobs = pool[key]
        group = [jobs.popleft() for _ in range(min(self.batch_size, len(jobs)))]
        self._pooled -= len(group)
        if not jobs:
            del pool[key]
        return key, group

    def _loop(self) -> None:
        pool: dict[Hashable, deque[Job]] = {}
        while pool or not self._stopping:
            if not pool and not self._take(pool, block=True):
                continue
            key, group = self._next_batch(pool)
            live = []
            for job in group:
                if job.future.set_running_or_notify_cancel():  # False: the client has gone
                    live.append(job)
                else:
                    self.stats.drop()
            if live:
                self._run(key, live)

    def _run(self, key: Hashable, group: list[Job]) -> None:
        try:
            results = self.run(key, [job.payload for job in group])
        except Exception as err:  # the model failed: every request of the batch hears why
            results = [err] * len(group)
        for job, result in zip(group, results):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
