"""Dynamic batching. Each request's rows (token ids) join one queue; whenever a worker is free, the waiting
rows are sorted by length and cut into batches whose padded size (longest row x rows) fits the token budget,
whose row count fits ``max_batch_requests`` and whose padding is at most ``max_padding`` of their real
tokens (on a CPU a padded token costs as much as a real one, and a bigger batch buys little else); the batch
that holds the oldest row runs next, so no row waits behind younger ones for ever. While batches run, the
requests that arrive queue up and go together in the next one, so there is no fixed delay window unless
``max_batch_delay_s`` asks for one (then a batch that is not full waits up to that long after its oldest row
arrived). ``workers`` batches may run at once, each in its own thread (an onnxruntime session runs calls in
parallel). A bounded number of requests may be in the server at once; beyond it :meth:`Batcher.admit`
refuses at once (HTTP 429), so nothing queues without bound. A request cancelled while it waits (its client
went away) takes its rows out of the queue: they are never computed."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Overloaded(Exception):
    """More requests in the server than --max-concurrent-requests."""


class InferenceFailed(Exception):
    """The model raised on a batch."""


@dataclass
class Job:
    """One request's rows and the future its handler awaits."""

    rows: list[np.ndarray]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    outputs: list[Any] = field(default_factory=list)
    pending: int = 0


class Batcher:
    """``run(input_ids, attention_mask) -> outputs`` is called in one worker thread, one batch at a time.
    ``delay_s`` makes every batch that much slower (for tests of backpressure and shutdown)."""

    def __init__(
        self,
        run: Callable[[np.ndarray, np.ndarray], np.ndarray],
        *,
        pad_value: int,
        max_batch_tokens: int,
        max_concurrent: int,
        max_batch_requests: int | None = None,
        max_batch_delay_s: float = 0.0,
        max_padding: float | None = 0.25,
        workers: int = 1,
        metrics: Any = None,
        delay_s: float = 0.0,
    ):
        self.run, self.pad_value, self.metrics, self.delay_s = run, pad_value, metrics, delay_s
        self.max_batch_tokens, self.max_concurrent = max_batch_tokens, max_concurrent
        self.max_batch_requests, self.max_batch_delay_s = max_batch_requests, max_batch_delay_s
        self.max_padding, self.workers = max_padding, workers
        self.skipped = 0  # rows dropped from the queue because their request was cancelled
        self.queue: deque[tuple[Job, int]] = deque()
        self.in_flight = 0
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="zoo-serve-batch")
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []

    # ---- requests ---------------------------------------------------------------------------------
    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the --max-concurrent-requests places for the whole request, or raise Overloaded."""
        if self.in_flight >= self.max_concurrent:
            raise Overloaded(
                f"the server is at its limit of {self.max_concurrent} concurrent requests; retry later"
            )
        self.in_flight += 1
        self._gauge()
        try:
            yield
        finally:
            self.in_flight -= 1
            self._gauge()

    async def submit(self, rows: list[np.ndarray]) -> list[Any]:
        """The model's output per row (per-token outputs cut to the row's length)."""
        self.start()
        job = Job(
            rows, asyncio.get_running_loop().create_future(), outputs=[None] * len(rows), pending=len(rows)
        )
        if not rows:
            return []
        self.queue.extend((job, i) for i in range(len(rows)))
        self._gauge()
        self._wake.set()
        try:
            return await job.future
        except asyncio.CancelledError:  # the request went away: its waiting rows are never computed
            self._drop(job)
            raise

    def _drop(self, job: Job) -> None:
        waiting = len(self.queue)
        self.queue = deque(entry for entry in self.queue if entry[0] is not job)
        self.skipped += waiting - len(self.queue)
        if self.metrics is not None:
            self.metrics.skipped_rows.inc(waiting - len(self.queue))
        self._gauge()

    # ---- the worker -------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._wake = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._loop()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self.executor.shutdown(wait=True)

    def _fits(self, longest: int, rows: int, real: int | None = None) -> bool:
        """Whether ``rows`` rows padded to ``longest`` tokens fit in one batch (and, given their ``real``
        tokens, pad by at most max_padding of them)."""
        padded = longest * rows
        if real is not None and self.max_padding is not None and padded > real * (1 + self.max_padding):
            return False
        return padded <= self.max_batch_tokens and rows <= (self.max_batch_requests or rows)

    def _full(self) -> bool:
        """Whether the queue already holds a full batch (then a delay window has nothing to wait for)."""
        rows = len(self.queue)
        return not self._fits(max(len(job.rows[i]) for job, i in self.queue), rows + 1)

    def _take(self) -> list[tuple[Job, int]]:
        """The next batch: the waiting rows sorted by length, cut where the next row would not fit, and the
        piece that holds the oldest row (which is never left behind; a row alone always fits)."""
        waiting = [entry for entry in self.queue if not entry[0].future.done()]
        if not waiting:
            self.queue.clear()
            return []
        by_length = sorted(range(len(waiting)), key=lambda k: len(waiting[k][0].rows[waiting[k][1]]))
        piece: list[int] = []
        longest = real = 0
        for k in by_length:
            size = len(waiting[k][0].rows[waiting[k][1]])
            if piece and not self._fits(max(longest, size), len(piece) + 1, real + size):
                if 0 in piece:
                    break
                piece, longest, real = [], 0, 0
            piece.append(k)
            longest, real = max(longest, size), real + size
        chosen = set(piece)
        self.queue = deque(entry for k, entry in enumerate(waiting) if k not in chosen)
        return [waiting[k] for k in piece]

    async def _window(self) -> None:
        """With a delay window, wait until the oldest row has waited max_batch_delay_s or a batch is full."""
        if not self.max_batch_delay_s:
            return
        deadline = self.queue[0][0].enqueued + self.max_batch_delay_s
        while self.queue and not self._full() and (left := deadline - time.perf_counter()) > 0:
            self._wake.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _infer(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.run(ids, mask), time.perf_counter() - started

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._window()
            batch = self._take()
            self._gauge()
            if not batch:
                continue
            rows = [job.rows[i] for job, i in batch]
            longest = max(len(r) for r in rows)
            ids = np.full((len(rows), longest), self.pad_value, dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, row in enumerate(rows):
                ids[r, : len(row)], mask[r, : len(row)] = row, 1
            now = time.perf_counter()
            if self.metrics is not None:
                for job in {id(j): j for j, _ in batch}.values():
                    self.metrics.queue_time.observe(now - job.enqueued)
                self.metrics.batch_size.observe(len(rows))
                self.metrics.batch_tokens.observe(ids.size)
            try:
                out, took = await loop.run_in_executor(self.executor, self._infer, ids, mask)
                out = np.asarray(out)
            except Exception as exc:  # onnxruntime raises its own types; every request in the batch fails
                error = InferenceFailed(f"inference failed: {type(exc).__name__}: {exc}")
                for job, _ in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            if self.metrics is not None:
                self.metrics.inference_time.observe(took)
            for r, (job, i) in enumerate(batch):
                if job.future.done():
                    continue
                job.outputs[i] = out[r, : len(rows[r])] if out.ndim == 3 else out[r]
                job.pending -= 1
                if job.pending == 0:
                    job.future.set_result(job.outputs)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self.queue))
            self.metrics.in_flight.set(self.in_flight)
