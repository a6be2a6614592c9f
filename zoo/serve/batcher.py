"""Dynamic batching. Each request's rows (token ids) join one queue. Whenever a worker is free and no batch
is ready, the oldest rows, as many as fit one batch in arrival order (padded size, longest row x rows, within
the token budget; at most ``max_batch_requests`` rows), form a window; the window is sorted by length and
cut into batches whose padding is at most ``max_padding`` of their real tokens (on a CPU a padded token costs
as much as a real one, and a bigger batch buys little else). A window's batches run, shortest rows first,
before any younger row, so sorting never costs a row more than one window's wait. While batches run, the
requests that arrive queue up for the next window, so there is no fixed delay unless ``max_batch_delay_s``
asks for one (then a window that is not a full batch waits up to that long after its oldest row arrived).

``workers`` threads each take a batch, pad it, run it and take the next one themselves: the event loop only
queues rows and receives each batch's outputs (one callback per batch), so a busy loop (many connections)
never leaves a worker waiting for its next batch. An onnxruntime session runs calls in parallel. A batch that
is all the work there is (nothing queued, no other worker busy: a lone client) runs on ``run_alone`` when
given, a session with every worker's threads, so batching never makes a lone request wait on one core. A bounded
number of requests may be in the server at once; beyond it :meth:`Batcher.admit` refuses at once (HTTP 429),
so nothing queues without bound. A request cancelled while it waits (its client went away) takes its rows out
of the queue and the ready batches: they are never computed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    """``run(input_ids, attention_mask) -> outputs`` is called in the worker threads, one batch per call.
    ``run_alone`` (same signature) runs a batch that is all the work in the server. ``delay_s`` makes every
    batch that much slower (for tests of backpressure and shutdown)."""

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
        run_alone: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ):
        self.run, self.run_alone, self.pad_value = run, run_alone, pad_value
        self.metrics, self.delay_s = metrics, delay_s
        self.max_batch_tokens, self.max_concurrent = max_batch_tokens, max_concurrent
        self.max_batch_requests, self.max_batch_delay_s = max_batch_requests, max_batch_delay_s
        self.max_padding, self.workers = max_padding, workers
        self.skipped = 0  # rows dropped from the queue because their request was cancelled
        # the queue and the ready batches are shared by the event loop (which adds and drops rows) and the
        # workers (which take batches): both under ``lock``, which also wakes an idle worker
        self.lock = threading.Condition()
        self.queue: deque[tuple[Job, int]] = deque()  # rows that wait for a window
        self.ready: deque[list[tuple[Job, int]]] = deque()  # the batches cut from the last window
        self.in_flight = 0
        self.busy = 0  # workers running a batch
        self.alone = 0  # batches that ran on run_alone
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

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

    def enqueue(self, rows: list[np.ndarray]) -> asyncio.Future:
        """Queue ``rows``; the future's result is the model's output per row (per-token outputs cut to the
        row's length). Cancelling the future takes the rows that still wait out of the queue."""
        self.start()
        assert self._loop is not None
        future = self._loop.create_future()
        if not rows:
            future.set_result([])
            return future
        job = Job(rows, future, outputs=[None] * len(rows), pending=len(rows))
        future.add_done_callback(lambda f: self._drop(job) if f.cancelled() else None)
        with self.lock:
            self.queue.extend((job, i) for i in range(len(rows)))
            self.lock.notify_all() if self.max_batch_delay_s else self.lock.notify()
        self._gauge()
        return future

    async def submit(self, rows: list[np.ndarray]) -> list[Any]:
        """The model's output per row; a cancelled submit's waiting rows are never computed."""
        return await self.enqueue(rows)

    def _drop(self, job: Job) -> None:
        with self.lock:
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

    # ---- the workers ------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._threads:
            self._loop = asyncio.get_running_loop()
            self._threads = [
                threading.Thread(target=self._work, name=f"zoo-serve-batch_{i}", daemon=True)
                for i in range(self.workers)
            ]
            for thread in self._threads:
                thread.start()

    async def stop(self) -> None:
        """Stop the workers once their current batches are done (rows still queued are not run)."""
        with self.lock:
            self._stopping = True
            self.lock.notify_all()
        threads, self._threads = self._threads, []
        for thread in threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

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

    def _delay(self) -> None:
        """With a delay window, wait until the oldest row has waited max_batch_delay_s or a batch is full
        (called with the lock held; waiting releases it)."""
        if not self.max_batch_delay_s or self.ready or not self.queue:
            return
        deadline = self.queue[0][0].enqueued + self.max_batch_delay_s
        while (
            self.queue
            and not self._stopping
            and not self._full()
            and (left := deadline - time.perf_counter()) > 0
        ):
            self.lock.wait(left)

    def _next(self) -> tuple[list[tuple[Job, int]], bool] | None:
        """The next batch to run and whether it is all the work there is, waiting for rows while there are
        none; None once stopping. The caller runs it and then calls :meth:`_done`."""
        with self.lock:
            while not self._stopping and not (self.queue or self.ready):
                self.lock.wait()
            if self._stopping:
                return None
            self._delay()
            batch = self._take()
            more = bool(self.queue or self.ready)
            if more:  # another idle worker may take it
                self.lock.notify()
            alone = self.run_alone is not None and not more and self.busy == 0
            self.busy += 1
            self.alone += alone
        self._gauge()
        return batch, alone

    def _done(self) -> None:
        with self.lock:
            self.busy -= 1

    def _work(self) -> None:
        """A worker thread: take a batch, pad it, run it, hand the outputs to the event loop; repeat."""
        while (taken := self._next()) is not None:
            batch, alone = taken
            try:
                answer = self._run(batch, alone) if batch else None
            finally:  # no longer busy before the answer goes out: a lone client's next request runs alone too
                self._done()
            if answer is None:
                continue
            try:
                self._loop.call_soon_threadsafe(self._deliver, *answer)
            except RuntimeError:  # the event loop has closed: nobody waits for these answers
                return

    def _run(self, batch: list[tuple[Job, int]], alone: bool) -> tuple[list, list[int], Any, Any]:
        """Pad ``batch`` and run it (on run_alone if ``alone``): the arguments of :meth:`_deliver`."""
        lengths = [len(job.rows[i]) for job, i in batch]
        ids = np.full((len(batch), max(lengths)), self.pad_value, dtype=np.int64)
        mask = np.zeros_like(ids)
        for r, (job, i) in enumerate(batch):
            ids[r, : lengths[r]], mask[r, : lengths[r]] = job.rows[i], 1
        started = time.perf_counter()
        if self.metrics is not None:
            for job in {id(j): j for j, _ in batch}.values():
                self.metrics.queue_time.observe(started - job.enqueued)
            self.metrics.batch_size.observe(len(batch))
            self.metrics.batch_tokens.observe(ids.size)
        out: np.ndarray | None = None
        error: Exception | None = None
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            run = self.run_alone if alone and self.run_alone is not None else self.run
            out = np.asarray(run(ids, mask))
        except Exception as exc:  # onnxruntime raises its own types; every request in the batch fails
            error = InferenceFailed(f"inference failed: {type(exc).__name__}: {exc}")
        if self.metrics is not None and error is None:
            self.metrics.inference_time.observe(time.perf_counter() - started)
        return batch, lengths, out, error

    def _deliver(self, batch: list[tuple[Job, int]], lengths: list[int], out: Any, error: Any) -> None:
        """On the event loop: each row's output to its request; a request is answered with its last row."""
        for r, (job, i) in enumerate(batch):
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
                continue
            job.outputs[i] = out[r, : lengths[r]] if out.ndim == 3 else out[r]
            job.pending -= 1
            if job.pending == 0:
                job.future.set_result(job.outputs)

    def _gauge(self) -> None:
        if self.metrics is not None:
            with self.lock:
                waiting = self._waiting()
            self.metrics.queue_depth.set(waiting)
            self.metrics.in_flight.set(self.in_flight)
