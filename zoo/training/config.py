"""Training settings, each declared once: its default, its check, its help and its command-line flag. The
`zoo finetune` options, the Python API (``TrainConfig(...)``) and the resumable checkpoint all come from
this dataclass. The defaults are chosen to fine-tune well without tuning (see the README's benchmark).
Importing this module imports no torch, so `zoo --help` stays fast."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from zoo.constants import LONG_TEXT_MODES
from zoo.errors import ZooError

PRETRAINED_LR = 1e-4  # MiniLM-sized checkpoints; measured on the tweets (bench/finetune.py)
SCRATCH_LR = 1e-3  # a small model with fresh weights
ADAPTER_LR = 1e-3  # an adapter (LoRA) over a pretrained base: measured on the tweets (bench/lora.py)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    cli: bool = True,
) -> Any:
    """A TrainConfig field with what `zoo finetune` needs to offer it as a flag (``cli=False``: API only)."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "cli": cli})


@dataclass
class TrainConfig:
    epochs: int = option(3, "Passes over the training data.")
    batch_size: int = option(32, "Samples per optimizer step, over all processes and accumulation steps.")
    lr: float | None = option(
        None,
        f"Peak learning rate [default: {PRETRAINED_LR:g} pretrained, "
        f"{SCRATCH_LR:g} from scratch, {ADAPTER_LR:g} with --adapter].",
    )
    warmup_ratio: float = option(0.1, "Share of all steps with a linear warm-up from 0.")
    weight_decay: float = option(0.01, "AdamW decay on weight matrices; none on biases and norms.")
    max_grad_norm: float = option(1.0, "Gradient clipping; 0 turns it off.")
    grad_accum: int = option(1, "Micro-batches per optimizer step.")
    max_length: int = option(256, "Truncate texts to this many tokens (capped by the model's).")
    long_text: str | None = option(
        None,
        "Texts longer than --max-length: truncate (cut them), window (overlapping windows, each a training "
        "row with the text's label; outputs averaged per text) or window-max (max-pooled). Recorded in the "
        "model, so evaluate, predict, embed, the export and serve read texts the same way [default: truncate, "
        "with one line saying how many texts were cut].",
        choices=LONG_TEXT_MODES,
    )
    stride: int | None = option(
        None,
        "Tokens that neighbouring windows share with --long-text window [default: a quarter of a window].",
    )
    window_weight: str = option(
        "text",
        "text: the windows of a long text share one text's weight in the loss; window: each window weighs "
        "as much as a short text.",
        choices=("text", "window"),
    )
    device: str = option("auto", "auto, cpu, cuda or cuda:N.")
    precision: str = option(
        "auto", "Autocast precision (auto: bf16 or fp16 on CUDA, fp32 on CPU).", choices=PRECISIONS
    )
    seed: int = option(0, "Seed for the order of batches, dropout and fresh weights.")
    patience: int | None = option(2, "Epochs without improvement before stopping (needs --eval).")
    group_by_length: bool = option(True, "Sort within shuffled mega-batches so batches pad little.")
    mega_batches: int = option(50, "Batches per mega-batch for length grouping.", cli=False)
    eval_batch_size: int = option(64, "Batch size for evaluation.", cli=False)
    num_threads: int | None = option(
        None, "CPU threads per process [default: usable CPUs / processes].", flag="--threads"
    )
    log_every: int = option(50, "Steps between progress lines when not on a terminal.", cli=False)
    tensorboard: str | None = option(
        None,
        "Write TensorBoard event files (loss, lr, tokens/s, eval "
        "metrics) to this directory (the reports extra).",
    )
    curves: bool = option(
        True, "Write curves.png (loss per step, eval metrics per epoch; the reports extra)."
    )
    adapter: str | None = option(
        None,
        "Train only this adapter (lora) and the head over MODEL, a zoo model "
        "directory; the output is a small adapter directory. Options: --set "
        "adapter.r=8.",
    )
    head: str | None = option(
        None,
        "The task head a pre-trained (mlm) MODEL gets in place of its mlm head [default: cls].",
    )
    adapter_options: dict | None = option(
        None, "The adapter's options (r, alpha, dropout, targets for lora).", cli=False
    )

    def __post_init__(self) -> None:
        for name in (
            "epochs",
            "batch_size",
            "grad_accum",
            "max_length",
            "mega_batches",
            "eval_batch_size",
            "log_every",
        ):
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
        if self.adapter_options is not None and not isinstance(self.adapter_options, dict):
            raise ZooError(f"adapter_options must be a dict, got {self.adapter_options!r}")
        if self.adapter_options and not self.adapter:
            raise ZooError("adapter options were given without --adapter")
        if self.long_text is not None or self.stride is not None:
            from zoo.windows import LongText

            LongText().override(self.long_text, self.stride)  # checks the mode and the stride
        if self.window_weight not in ("text", "window"):
            raise ZooError(f"window-weight must be text or window, got '{self.window_weight}'")
        if self.precision not in PRECISIONS:
            raise ZooError(f"precision must be auto, fp32, bf16 or fp16, got '{self.precision}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A saved config; settings this zoo does not know are dropped, new ones take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def cli_fields(config_class: type = TrainConfig) -> list[Any]:
    """The fields `zoo finetune` (or the command of another config class) offers as flags, in order."""
    return [f for f in fields(config_class) if f.metadata.get("cli", True)]


def default_of(f: Any) -> Any:
    return f.default if f.default is not MISSING else None
