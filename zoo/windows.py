"""Texts longer than the model: overlapping windows of token ids, and one output per text combined from its
windows' outputs. numpy only (no torch, no tokenizers import), so the eager model, the ONNX runtime and
`zoo serve` cut and combine in the same code.

A sequence is ``[head specials] body [tail specials]`` (``[CLS] ... [SEP]`` for BERT). One longer than
``max_length`` becomes windows that each keep the head and tail specials around ``max_length - head - tail``
body tokens; neighbouring windows share ``stride`` body tokens (Hugging Face's ``stride``: the overlap), and
the last window ends at the body's end. The model runs every window as a row of its own, in the same
batches as the other rows; the task combines a text's window outputs (``Task.combine``): logits averaged
or max-pooled, vectors averaged, per-token outputs stitched from the window where each token is most
central. A sequence that fits is one window, and its output is the model's, untouched.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import LONG_TEXT_MODES as MODES  # window: mean of the windows' outputs; window-max: max
from .errors import ZooError

# The default cuts, and says once per run how many texts it cut and by how much. README "Long texts" has the
# measurement: windows cost a forward pass per window, and at prediction alone (a model trained on cut text)
# they gained nothing; the gain came from fine-tuning on windows, a choice the message points to.
DEFAULT_MODE = "truncate"
DEFAULT_OVERLAP = 4  # without --stride, neighbouring windows share a quarter of a window's body


@dataclass(frozen=True)
class LongText:
    """How texts longer than the model's length are read. ``chosen``: the user or the model's record picked
    the mode, so a cut is expected and not reported."""

    mode: str = DEFAULT_MODE
    stride: int | None = None  # body tokens neighbouring windows share; None: a quarter of a window
    chosen: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ZooError(f"--long-text must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.stride is not None and (
            not isinstance(self.stride, int) or isinstance(self.stride, bool) or self.stride < 0
        ):
            raise ZooError(f"--stride must be a non-negative integer, got {self.stride!r}")

    @property
    def windowed(self) -> bool:
        return self.mode != "truncate"

    @property
    def how(self) -> str:
        """How a sequence task combines its windows' outputs: "mean" or "max"."""
        return "max" if self.mode == "window-max" else "mean"

    def record(self) -> dict[str, Any]:
        """What config.json (tokenizer.long_text) and the export manifest keep."""
        return {"mode": self.mode, "stride": self.stride}

    @classmethod
    def from_record(cls, data: Any, where: str = "config.json") -> LongText:
        """A recorded setting (None: the default, not chosen)."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or data.get("mode") not in MODES:
            raise ZooError(f"{where}: 'long_text' must be an object with a mode of {', '.join(MODES)}")
        try:
            return cls(data["mode"], data.get("stride"), chosen=True)
        except ZooError as exc:
            raise ZooError(f"{where}: {exc}") from None

    def override(self, mode: str | None, stride: int | None) -> LongText:
        """This setting with a command's --long-text and --stride (None keeps what is recorded)."""
        if mode is None and stride is None:
            return self
        result = LongText(mode or self.mode, stride if stride is not None else self.stride, chosen=True)
        if stride is not None and not result.windowed:
            raise ZooError("--stride sets how much windows overlap; add --long-text window")
        return result


def use(predictor: Any, mode: str | None, stride: int | None) -> None:
    """Apply a command's --long-text/--stride to a predictor (over what its model or export records)."""
    predictor.long_text = setting(predictor).override(mode, stride)


def setting(predictor: Any) -> LongText:
    return getattr(predictor, "long_text", None) or LongText()


# ---- windows --------------------------------------------------------------------------------------


@dataclass
class Windows:
    """One sequence's windows: each keeps ``head`` and ``tail`` special tokens around ``size`` body tokens
    from ``starts[i]`` (a position in the body); ``length``: the whole sequence's tokens."""

    starts: list[int]
    size: int
    head: int
    tail: int
    length: int

    def __len__(self) -> int:
        return len(self.starts)

    def cut(self, row: np.ndarray) -> list[np.ndarray]:
        """A per-token array of the whole sequence (its ids, or per-token targets) cut into the windows."""
        row = np.asarray(row)
        if len(self.starts) == 1 and self.size >= self.length - self.head - self.tail:
            return [row]
        head, body, tail = (
            row[: self.head],
            row[self.head : self.length - self.tail],
            row[self.length - self.tail :],
        )
        return [np.concatenate([head, body[s : s + self.size], tail]) for s in self.starts]

    def stitch(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Per-token outputs of the windows -> (length, ...) for the whole sequence: each body token from the
        window where it is most central (the earlier window on a tie), the head specials from the first
        window and the tail specials from the last."""
        body = self.length - self.head - self.tail
        first = np.asarray(outputs[0])
        out = np.zeros((self.length, *first.shape[1:]), dtype=first.dtype)
        best = np.full(body, -1, dtype=np.int64)
        for start, window in zip(self.starts, outputs):
            window = np.asarray(window)
            n = len(window) - self.head - self.tail  # the body tokens this window holds
            position = np.arange(n)
            margin = np.minimum(position, n - 1 - position)
            better = margin > best[start : start + n]
            out[self.head + start + position[better]] = window[self.head + position[better]]
            best[start : start + n][better] = margin[better]
        out[: self.head] = first[: self.head]
        if self.tail:
            out[self.length - self.tail :] = np.asarray(outputs[-1])[-self.tail :]
        return out


def windows_of(encoding: Any, max_length: int, stride: int | None) -> Windows:
    """The windows of one encoding (``ids``, ``special_tokens_mask``, ``n_sequences``, as a
    ``tokenizers.Encoding`` has them); one window when it fits."""
    special = list(encoding.special_tokens_mask)
    length = len(special)
    head = next((i for i, s in enumerate(special) if not s), length)
    tail = next((i for i, s in enumerate(reversed(special)) if not s), 0) if head < length else 0
    body = length - head - tail
    if length <= max_length:
        return Windows([0], body, head, tail, length)
    if getattr(encoding, "n_sequences", 1) > 1:
        raise ZooError(
            f"a text pair of {length} tokens is longer than {max_length}; --long-text window splits "
            "single texts only (use --long-text truncate for pairs)"
        )
    size = max_length - head - tail
    if size < 1:
        raise ZooError(f"--max-length {max_length} leaves no room for text between the special tokens")
    overlap = size // DEFAULT_OVERLAP if stride is None else stride
    if overlap >= size:
        raise ZooError(f"--stride {overlap} must be smaller than a window's {size} text tokens")
    step = size - overlap
    count = 1 + math.ceil((body - size) / step)
    return Windows([min(i * step, body - size) for i in range(count)], size, head, tail, length)


@dataclass
class Plan:
    """The windows of a batch of sequences: ``ids`` holds every window of every sequence in order."""

    windows: list[Windows]
    ids: list[np.ndarray]

    @property
    def split(self) -> bool:
        """Whether any sequence is longer than one window."""
        return any(len(w) > 1 for w in self.windows)

    @property
    def counts(self) -> list[int]:
        return [len(w) for w in self.windows]

    def spread(self, items: Sequence[Any], per_token: bool) -> list[Any]:
        """One item per sequence (a target) -> one per window: cut like the ids when ``per_token``."""
        if per_token:
            return [piece for w, item in zip(self.windows, items) for piece in w.cut(item)]
        return [item for w, item in zip(self.windows, items) for _ in range(len(w))]

    def weights(self) -> np.ndarray:
        """Per window, 1 / its text's number of windows: every text weighs one row in the loss."""
        return np.asarray([1.0 / len(w) for w in self.windows for _ in range(len(w))], dtype=np.float32)

    def combine(self, task: Any, outputs: Sequence[np.ndarray], how: str = "mean") -> list[np.ndarray]:
        """The model's outputs per window -> one per sequence, combined by the task (``Task.combine``)."""
        combined, at = [], 0
        for w in self.windows:
            part = list(outputs[at : at + len(w)])
            at += len(w)
            combined.append(part[0] if len(w) == 1 else task.combine(part, w, how))
        return combined


def plan(encodings: Sequence[Any], max_length: int, stride: int | None = None) -> Plan:
    """The windows of every sequence (``tokenizers.Encoding`` objects, cut nowhere)."""
    windows = [windows_of(e, max_length, stride) for e in encodings]
    ids = [piece for w, e in zip(windows, encodings) for piece in w.cut(np.asarray(e.ids, dtype=np.int64))]
    return Plan(windows, ids)


def encode(
    task: Any, tokenizer: Any, table: Any, max_length: int, long_text: LongText
) -> tuple[list, Plan | None]:
    """The task's encodings of a table's rows and, when windowing, the plan of their sequences' windows
    (the encodings are then whole; otherwise cut at ``max_length`` as before, and the plan is None)."""
    if not long_text.windowed:
        return task.inputs(tokenizer, table, max_length), None
    encodings = task.inputs(tokenizer, table, None)
    return encodings, plan(task.sequences(encodings), max_length, long_text.stride)


# ---- the once-per-run message when texts are cut --------------------------------------------------


def cut_message(encodings: Sequence[Any], max_length: int) -> str | None:
    """One line on the sequences a tokenizer cut at ``max_length`` (from each ``Encoding.overflowing``):
    how many, by how many tokens on average, and how to read them whole; None when nothing was cut."""
    lost = [
        sum(len(o.ids) - sum(o.special_tokens_mask) for o in e.overflowing)
        for e in encodings
        if getattr(e, "overflowing", None)
    ]
    lost = [n for n in lost if n > 0]
    if not lost:
        return None
    return (
        f"zoo: {len(lost)} of {len(encodings)} texts are longer than {max_length} tokens and were cut "
        f"(by {sum(lost) / len(lost):.0f} tokens on average); --long-text window reads them whole"
    )


def note_cut(holder: Any, encodings: Sequence[Any], max_length: int, long_text: LongText) -> None:
    """Print :func:`cut_message` to stderr once per ``holder`` (a predictor: one per command run), unless
    the mode was chosen (a cut then is what was asked for)."""
    if long_text.chosen or getattr(holder, "cut_noted", False):
        return
    message = cut_message(encodings, max_length)
    if message:
        print(message, file=sys.stderr)
        holder.cut_noted = True


__all__ = [
    "DEFAULT_MODE",
    "MODES",
    "LongText",
    "Plan",
    "Windows",
    "cut_message",
    "encode",
    "note_cut",
    "plan",
    "setting",
    "use",
    "windows_of",
]
