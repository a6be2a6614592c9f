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
            raise ZooError("--tensorboard needs the tensorboard package; run: pip install 'zoo[reports]'") from None
        self.writer = SummaryWriter(log_dir=str(directory))

    def step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/tokens_per_s", tokens_per_s, step)

    def epoch(self, record: dict[str, Any]) -> None:
        step = record["step"]
        self.writer.add_scalar("epoch/train_loss", record["train_loss"], step)
        for name, value in (record.get("eval") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"eval/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
