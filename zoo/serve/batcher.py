"""Dynamic batching. Each request's rows (token ids) join one queue; whenever the worker thread is free, the
rows at the head of the queue, in arrival order, form the next batch until its padded size (longest row x
rows) would pass the token budget. While a batch runs, the requests that arrive queue up and go together in
the next one, so there is no fixed delay window. A bounded number of requests may be in the server at
once; beyond it :meth:`Batcher.admit` refuses at once (HTTP 429), so nothing queues without bound."""

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
        metrics: Any = None,
        delay_s: float = 0.0,
    ):
        self.run, self.pad_value, self.metrics, self.delay_s = run, pad_value, metrics, delay_s
        self.max_batch_tokens, self.max_concurrent = max_batch_tokens, max_concurrent
        self.queue: deque[tuple[Job, int]] = deque()
        self.in_flight = 0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="zoo-serve-batch")
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

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
        return await job.future  # a cancelled request cancels the future, and its rows are skipped

    # ---- the worker -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=True)

    def _take(self) -> list[tuple[Job, int]]:
        batch: list[tuple[Job, int]] = []
        longest = 0
        while self.queue:
            job, i = self.queue[0]
            if job.future.done():  # cancelled, or failed in an earlier batch
                self.queue.popleft()
                continue
            size = max(longest, len(job.rows[i]))
            if batch and size * (len(batch) + 1) > self.max_batch_tokens:
                break
            batch.append(self.queue.popleft())
            longest = size
        return batch

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
