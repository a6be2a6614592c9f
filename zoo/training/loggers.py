"""What a fine-tuning run reports, as loggers the recipe calls in turn: each sees every optimizer step and
every finished epoch, and is closed once at the end (also after an interruption or an error). The
progress bar, metrics.jsonl, TensorBoard and curves.png are loggers; only the main process has any."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from zoo import io
from zoo.constants import CURVES_NAME, METRICS_NAME

from .state import TrainState


class Logger(Protocol):
    def on_step(
        self, state: TrainState, loss: float, lr: float, tokens: int, tokens_per_s: float
    ) -> None: ...

    def on_epoch(self, state: TrainState, record: dict[str, Any]) -> None: ...

    def close(self, state: TrainState) -> None: ...


class MetricsFile:
    """metrics.jsonl: one JSON line per finished epoch, rewritten atomically after each."""

    def __init__(self, output: Path):
        self.path = output / METRICS_NAME

    def on_step(self, state, loss, lr, tokens, tokens_per_s) -> None:
        pass

    def on_epoch(self, state: TrainState, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        io.write_text(self.path, "".join(json.dumps(r) + "\n" for r in state.history))

    def close(self, state: TrainState) -> None:
        pass


class Curves:
    """curves.png at the end: the training loss per step (smoothed) with the eval loss, and the task's main
    metric per epoch. Needs matplotlib (the reports extra); without it, one note says so."""

    def __init__(self, output: Path, metric: str, lower_is_better: bool, note: Callable[[str], None]):
        self.path, self.metric, self.lower_is_better, self.note = (
            output / CURVES_NAME,
            metric,
            lower_is_better,
            note,
        )

    def on_step(self, state, loss, lr, tokens, tokens_per_s) -> None:
        pass

    def on_epoch(self, state, record) -> None:
        pass

    def close(self, state: TrainState) -> None:
        from zoo.errors import ZooError
        from zoo.reports import plot_curves

        if not state.history:
            return
        try:
            plot_curves(
                state.history,
                self.path,
                metric=self.metric,
                lower_is_better=self.lower_is_better,
                steps=state.losses,
            )
        except ZooError as exc:
            self.note(f"zoo: no {CURVES_NAME} ({exc})")


class StepCallback:
    """Calls ``fn(step)`` after every optimizer step (the Python API's ``on_step=``)."""

    def __init__(self, fn: Callable[[int], None]):
        self.fn = fn

    def on_step(self, state, loss, lr, tokens, tokens_per_s) -> None:
        self.fn(state.step)

    def on_epoch(self, state, record) -> None:
        pass

    def close(self, state) -> None:
        pass
