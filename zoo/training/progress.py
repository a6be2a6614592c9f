"""Training progress: a tqdm bar (tokens/s, loss, ETA) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None, log_every: int = 50):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_every = log_every
        self.bar = None

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int = 0) -> None:
        self.epoch, self.epochs, self.total, self.step, self.first = epoch, epochs, total, done, done
        self.tokens, self.start, self.loss = 0, time.perf_counter(), float("nan")
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                desc=f"epoch {epoch}/{epochs}",
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
            )

    def tokens_per_s(self) -> float:
        return self.tokens / max(1e-9, time.perf_counter() - self.start)

    def update(self, tokens: int, loss: float, lr: float) -> None:
        self.step += 1
        self.tokens += tokens
        self.loss = loss
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss:.4f}", tok_s=f"{self.tokens_per_s():,.0f}", lr=f"{lr:.2e}", refresh=False
            )
            self.bar.update(1)
        elif self.enabled and (self.step % self.log_every == 0 or self.step == self.total):
            elapsed = time.perf_counter() - self.start
            rate = (self.step - self.first) / max(elapsed, 1e-9)
            eta = max(0.0, (self.total - self.step) / rate) if rate else 0.0
            print(
                f"epoch {self.epoch}/{self.epochs} step {self.step}/{self.total} loss {loss:.4f} "
                f"lr {lr:.2e} {self.tokens_per_s():,.0f} tok/s eta {eta:.0f}s",
                file=self.stream,
                flush=True,
            )

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # the Logger interface (zoo.training.loggers)
    def on_step(self, state, loss: float, lr: float, tokens: int, tokens_per_s: float) -> None:
        self.update(tokens, loss, lr)

    def on_epoch(self, state, record) -> None:
        pass

    def close(self, state=None) -> None:
        self.end_epoch()

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=self.stream, flush=True)
