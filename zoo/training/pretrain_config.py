"""Pre-training settings (`zoo pretrain`): TrainConfig with a small-budget pre-training recipe's defaults
and the settings only pre-training has. Each default's anchor (Cramming, MosaicBERT, ModernBERT) is in the
README. No torch is imported here, so `zoo pretrain --help` stays fast."""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo.errors import ZooError

from .config import TrainConfig, option

SCHEDULES = ("linear", "wsd")
UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | None) -> float | None:
    """'90s', '20m', '1.5h' or a number of seconds -> seconds."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ZooError(f"time-budget must be a positive duration like 90s, 20m or 1.5h, got '{text}'")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


@dataclass
class PretrainConfig(TrainConfig):
    """TrainConfig with a pre-training recipe's defaults and settings (README: which anchor each is from)."""

    batch_size: int = option(64, "Blocks per optimizer step, over all processes and accumulation steps.")
    max_length: int = option(128, "Tokens per packed block (capped by the model's positions).")
    lr: float | None = option(
        None, "Peak learning rate [default: 1e-3 from scratch, 1e-4 for an imported checkpoint]."
    )
    warmup_ratio: float = option(0.06, "Share of the run (steps or time) with a linear warm-up from 0.")
    max_steps: int | None = option(None, "Stop after this many optimizer steps.")
    time_budget: str | None = option(None, "Stop after this much training time: 90s, 20m, 1.5h.")
    mask_rate: float = option(0.3, "Share of tokens masked (80% [MASK], 10% random, 10% kept).")
    whole_word: bool = option(False, "Mask all the pieces of a chosen word together.")
    schedule: str = option(
        "linear",
        "Learning rate after warm-up: linear decay to 0, or wsd (flat, then decay).",
        choices=SCHEDULES,
    )
    decay_ratio: float = option(0.2, "With --schedule wsd: the share of the run spent decaying.", cli=False)
    pretrain_dropout: float = option(0.0, "Dropout while pre-training.", flag="--dropout")
    eval_every: int = option(200, "Steps between evaluations on the held-out blocks (and saves).")
    eval_blocks: int = option(128, "Held-out blocks to evaluate on.")
    holdout: int = option(20, "Every Nth document is held out for evaluation (0: none).")
    shuffle_blocks: int = option(1024, "Blocks in the shuffle buffer.", cli=False)
    text_column: str | None = option(None, "The text column of a CSV or JSONL corpus [default: text].")
    # fine-tuning settings that do not apply here
    epochs: int = option(1, "Unused by pre-training.", cli=False)
    patience: int | None = option(None, "Unused by pre-training.", cli=False)
    group_by_length: bool = option(False, "Unused by pre-training (blocks are packed).", cli=False)
    adapter: str | None = option(None, "Unused by pre-training.", cli=False)
    head: str | None = option(None, "Unused by pre-training.", cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps is None and self.time_budget is None:
            raise ZooError("give --max-steps or --time-budget (or both) to say how long to pre-train")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ZooError(f"max-steps must be a positive integer, got {self.max_steps!r}")
        parse_duration(self.time_budget)
        if not 0 < self.mask_rate < 1:
            raise ZooError(f"mask-rate must be in (0, 1), got {self.mask_rate}")
        if not 0 <= self.pretrain_dropout < 1:
            raise ZooError(f"dropout must be in [0, 1), got {self.pretrain_dropout}")
        if not 0 <= self.decay_ratio <= 1:
            raise ZooError(f"decay-ratio must be in [0, 1], got {self.decay_ratio}")
        for name in ("eval_every", "eval_blocks", "shuffle_blocks"):
            if getattr(self, name) < 1:
                raise ZooError(f"{name.replace('_', '-')} must be a positive integer")
        if self.holdout < 0 or self.holdout == 1:
            raise ZooError("holdout must be 0 (none) or at least 2 (every Nth document)")
        if self.schedule not in SCHEDULES:
            raise ZooError(f"schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
