"""Dynamic batching. Each request's rows (token ids) join one queue. Whenever a worker is free and no batch
is ready, the oldest rows, as many as fit one batch in arrival order (padded size, longest row x rows, within
the token budget; at most ``max_batch_requests`` rows), form a window; the window is sorted by length and
cut into batches whose padding is at most ``max_padding`` of their real tokens (on a CPU a padded token costs
as much as a real one, and a bigger batch buys little else). A window's batches run, shortest rows first,
before any younger row, so sorting never costs a row more than one window's wait. While batches run, the
requests that arrive queue up for the next window, so there is no fixed delay unless ``max_batch_delay_s``
asks for one (then a window that is not a full batch waits up to that long after its oldest row arrived).
``workers`` batches may run at once, each in its own thread (an onnxruntime session runs calls in
parallel). A bounded number of requests may be in the server at once; beyond it :meth:`Batcher.admit`
refuses at once (HTTP 429), so nothing queues without bound. A request cancelled while it waits (its client
went away) takes its rows out of the queue and the ready batches: they are never computed."""

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
        self.queue: deque[tuple[Job, int]] = deque()  # rows that wait for a window
        self.ready: deque[list[tuple[Job, int]]] = deque()  # the batches cut from the last window
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
        waiting = self._waiting()
        self.queue = deque(entry for entry in self.queue if entry[0] is not job)
        for piece in self.ready:
            piece[:] = [entry for entry in piece if entry[0] is not job]
        dropped = waiting - self._waiting()
        self.skipped += dropped
        if self.metrics is not None:
            self.metrics.skipped_rows.inc(dropped)
        self._gauge()

    def _waiting(self) -> int:
        return len(self.queue) + sum(len(piece) for piece in self.ready)

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
        """The next batch: a ready one, else a window of the oldest rows (what one batch in arrival order
        holds) sorted by length and cut where the next row would not fit or would pad too much (a row alone
        always fits); the window's other batches are ready next, before any younger row."""
        while self.ready:
            piece = [entry for entry in self.ready.popleft() if not entry[0].future.done()]
            if piece:
                return piece
        window: list[tuple[Job, int]] = []
        longest = 0
        while self.queue:  # the oldest rows, as many as one batch in arrival order holds
            job, i = self.queue[0]
            if not job.future.done():
                if window and not self._fits(max(longest, len(job.rows[i])), len(window) + 1):
                    break
                window.append((job, i))
                longest = max(longest, len(job.rows[i]))
            self.queue.popleft()
        window.sort(key=lambda e: len(e[0].rows[e[1]]))
        pieces: list[list[tuple[Job, int]]] = []
        longest = real = 0
        for entry in window:
            size = len(entry[0].rows[entry[1]])
            if not pieces or not self._fits(max(longest, size), len(pieces[-1]) + 1, real + size):
                pieces.append([])
                longest = real = 0
            pieces[-1].append(entry)
            longest, real = max(longest, size), real + size
        self.ready.extend(pieces[1:])
        return pieces[0] if pieces else []

    async def _delay(self) -> None:
        """With a delay window, wait until the oldest row has waited max_batch_delay_s or a batch is full."""
        if not self.max_batch_delay_s or self.ready or not self.queue:
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
            if not self.queue and not self.ready:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._delay()
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
            self.metrics.queue_depth.set(self._waiting())
            self.metrics.in_flight.set(self.in_flight)
