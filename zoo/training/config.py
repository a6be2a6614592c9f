"""Training settings. The defaults are chosen to fine-tune well without tuning (see README's benchmark)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from zoo.errors import ZooError

PRETRAINED_LR = 1e-4  # MiniLM-sized checkpoints; measured on the tweets (bench/finetune.py)
SCRATCH_LR = 1e-3     # a small model with fresh weights


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32            # samples per optimizer step, over all processes and accumulation steps
    lr: Optional[float] = None      # None: PRETRAINED_LR for imported checkpoints, else SCRATCH_LR
    warmup_ratio: float = 0.1       # share of all steps with a linear warm-up from 0
    weight_decay: float = 0.01      # AdamW decay on weight matrices; none on biases and norms
    max_grad_norm: float = 1.0      # gradient clipping; 0 turns it off
    grad_accum: int = 1             # micro-batches per optimizer step
    max_length: int = 256           # truncation length (capped by the model's)
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    precision: str = "auto"         # auto | fp32 | bf16 | fp16
    seed: int = 0
    patience: Optional[int] = 2     # epochs without improvement before stopping (needs eval data)
    group_by_length: bool = True    # sort within shuffled mega-batches so batches pad little
    mega_batches: int = 50          # batches per mega-batch for length grouping
    eval_batch_size: int = 64
    num_threads: Optional[int] = None  # CPU threads per process; None: the cores / local processes
    log_every: int = 50             # steps between progress lines when not on a terminal
    tensorboard: Optional[str] = None  # directory for TensorBoard event files (the reports extra)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "mega_batches", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ZooError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ZooError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ZooError(f"warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ZooError("weight-decay and max-grad-norm must not be negative")
        if self.patience is not None and self.patience < 1:
            raise ZooError(f"patience must be a positive integer, got {self.patience}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ZooError(f"precision must be auto, fp32, bf16 or fp16, got '{self.precision}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
