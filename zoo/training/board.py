"""TensorBoard event files for a fine-tuning run: per step loss, learning rate and tokens/s; per epoch the
train loss and every scalar eval metric. Needs the tensorboard package (the reports extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.errors import ZooError


class Board:
    def __init__(self, directory: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ZooError(
                "--tensorboard needs the tensorboard package; run: pip install 'zoo[reports]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(directory))

    def on_step(self, state, loss: float, lr: float, tokens: int, tokens_per_s: float) -> None:
        step = state.step
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/tokens_per_s", tokens_per_s, step)

    def on_epoch(self, state, record: dict[str, Any]) -> None:
        step = record["step"]
        self.writer.add_scalar("epoch/train_loss", record["train_loss"], step)
        for name, value in (record.get("eval") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"eval/{name}", value, step)
        self.writer.flush()

    def close(self, state=None) -> None:
        self.writer.close()
