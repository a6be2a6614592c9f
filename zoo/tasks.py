"""Tasks, the fourth kind of part: what a label is and what a model's outputs mean.

A task object owns everything task-specific: which labels it reads and how they become targets, how
targets are collated into a batch, how outputs become predictions and how a prediction is printed, the
metrics and the one that picks the best epoch, what the int8 check compares, and synthetic labels for the
conformance kit. Heads name the task they serve (``register("cls", ..., task="classification")``); one
task can be served by several heads. Training, evaluation, prediction, export and the kit call the task
object; nothing outside a task plugin looks at label formats.

Task modules must import without torch (torch is imported inside ``collate`` and ``synthetic_labels``),
so an export is served with numpy, tokenizers and onnxruntime only. Subclass :class:`Task`; its defaults
fit a task whose input is one text (or a text pair) and whose output is one row of logits per text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .constants import IGNORE_INDEX
from .errors import ZooError, did_you_mean

if TYPE_CHECKING:
    from .data import Table
    from .spec import PartChoice

# Label formats of the first wave's heads (capabilities["labels"]) -> the task that replaced each.
LEGACY_LABEL_FORMATS = {
    "class": "classification",
    "multi": "multilabel",
    "float": "regression",
    "token": "token-classification",
}

Outputs = list[np.ndarray]  # one array per row: (num_labels,) or, for per-token tasks, (tokens, num_labels)


class Task:
    """The base of every task. Class attributes describe it; methods do the work (numpy unless noted)."""

    name: str = ""  # the registered name; set by zoo when the task is loaded
    per_token: bool = False  # outputs (B, S, L) per token instead of (B, L) per text
    named_labels: bool = True  # labels are names (stored in config.json), not numbers
    num_outputs: int | None = None  # a fixed number of outputs per row (one score), else one per label
    main_metric: str = "loss"  # picks the best epoch and stops early
    lower_is_better: bool = False  # for main_metric
    summary_metrics: tuple[str, ...] = ()  # printed after each epoch and at the top of reports
    output_names: tuple[str, ...] = ("logits",)  # the ONNX graph's outputs
    uses_top_k: bool = False  # whether `zoo predict --top-k` means something
    allows_empty_labels: bool = False  # an empty label cell is a label (no labels), not a missing one
    labelled_int8: bool = (
        False  # int8 is checked on labelled rows (``agreement``'s targets) when there are some
    )
    single_texts: bool = True  # plain texts are inputs of the model (a reranker's are (query, text) pairs)

    # ---- reading data -----------------------------------------------------------------------------
    def read(
        self,
        path: Any,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        pair_column: str | None = None,
        encoding: str | None = None,
    ) -> Table:
        """A labelled data file as a Table (training, --eval, `zoo evaluate`). Default: a text (and an
        optional text pair) with a label, the columns found by their usual names."""
        from .data import read_table

        return read_table(
            path,
            text_column=text_column,
            label_column=label_column,
            pair_column=pair_column,
            allow_empty_labels=self.allows_empty_labels,
            encoding=encoding,
        )

    # ---- labels -----------------------------------------------------------------------------------
    def label_names(self, table: Table, known: list[str] | None) -> list[str] | None:
        """The label set: the model's own when it has one, else every label in the data, sorted."""
        if not self.named_labels:
            return None
        if known:
            return list(known)
        names: set[str] = set()
        for label, line in zip(table.labels or [], table.lines):
            try:
                names.update(self.names_in(label))
            except ValueError as exc:
                raise ZooError(f"{table.source} line {line}: {exc}") from None
        return sort_names(names)

    def names_in(self, label: Any) -> list[str]:
        """The label names one raw label cell holds (named tasks)."""
        return [class_name(label)]

    def num_labels(self, table: Table, names: list[str] | None) -> int | None:
        """How many outputs the head needs for this data; None leaves the head's size as it is (the
        width of an embedding is the head's business)."""
        return self.num_outputs or len(names or [])

    def targets(
        self, table: Table, names: list[str] | None, num_labels: int, encodings: Sequence[Any]
    ) -> list[Any]:
        """Raw labels -> one encoded target per row; every bad cell is a ZooError naming file and line."""
        index = {n: i for i, n in enumerate(names or [])}
        out = []
        for label, line, text, encoding in zip(table.labels or [], table.lines, table.texts, encodings):
            where = f"{table.source} line {line}"
            try:
                out.append(self.target(label, index, num_labels, text, encoding, where))
            except ValueError as exc:
                raise ZooError(f"{where}: {exc}") from None
        return out

    def target(
        self, label: Any, index: dict[str, int], num_labels: int, text: Any, encoding: Any, where: str
    ) -> Any:
        """One row's target (override this or ``targets``)."""
        raise NotImplementedError

    # ---- inputs and batches -----------------------------------------------------------------------
    def inputs(self, tokenizer: Any, table: Table, max_length: int | None) -> list[Any]:
        """Token encodings (``tokenizers.Encoding``) per row: the text, or the text pair, cut at
        ``max_length`` (None: whole, for --long-text window, which cuts windows itself). A task that
        makes several sequences of one row (anchor, positive, negative) gives a list of encodings per row
        and a list of targets per row, and says in ``sequences`` how a batch's rows become sequences."""
        from .tokenizer import encode_rows

        return encode_rows(tokenizer, table.texts, table.pairs, max_length)

    def sequences(self, rows: Sequence[Any]) -> list[Any]:
        """A batch's per-row items (token ids, or targets) -> its per-sequence items, in the order the
        head's forward and loss see them; ``evaluate`` receives outputs and targets in this order too.
        Default: one sequence per row, unchanged."""
        return list(rows)

    def batch_keys(self, table: Table) -> list[tuple[Any, ...]] | None:
        """Per row, the keys no two rows of one training batch may share (the embedding task's texts,
        so that no in-batch negative is a copy of a positive); None (default): batches are free."""
        return None

    def check_training(self, config: Any) -> None:
        """Refuse, with a ZooError, training settings this task cannot honour (config: TrainConfig)."""

    def gather(self, outputs: Any, labels: Any, mask: Any) -> tuple[Any, Any, Any]:
        """Under torchrun, the batch the loss sees: default this process's rows; a task whose loss
        compares rows with each other (in-batch negatives) gathers every process's (torch)."""
        return outputs, labels, mask

    def row_groups(self, labels: Any) -> list[int] | None:
        """Sizes of consecutive groups of a training batch's rows that the model should run one by one, each
        padded only to its own longest (ZooModel.forward's ``groups``); only for tasks with one output per
        row. None (default): one forward over the batch."""
        return None

    def collate(self, targets: list[Any]) -> Any:
        """The targets of one batch as a tensor for the head's loss (torch)."""
        raise NotImplementedError

    # ---- outputs ----------------------------------------------------------------------------------
    def evaluate(self, outputs: Outputs, targets: list[Any], names: list[str] | None) -> dict[str, Any]:
        """Metrics of outputs against targets, with "loss" (the head's loss, in numpy)."""
        raise NotImplementedError

    def predict(
        self,
        table: Table,
        encodings: Sequence[Any],
        outputs: Outputs,
        names: list[str] | None,
        top_k: int = 1,
    ) -> list[dict[str, Any]]:
        """One JSON-ready result per row (what `zoo predict --json` prints)."""
        raise NotImplementedError

    def combine(self, outputs: Outputs, windows: Any, how: str = "mean") -> np.ndarray:
        """One text's output from the outputs of its windows (``--long-text window``; ``windows``: a
        zoo.windows.Windows, where each window sits in the text). Default: a per-token task stitches the
        windows (each token from the window where it is most central); others average the windows'
        outputs, or take their element-wise max when ``how`` is "max"."""
        if self.per_token:
            return windows.stitch(outputs)
        stacked = np.stack([np.asarray(o) for o in outputs])
        return stacked.max(axis=0) if how == "max" else stacked.mean(axis=0)

    def format_prediction(self, result: dict[str, Any]) -> str:
        """One line of plain-text `zoo predict` output; newlines in the text are escaped."""
        return f"{result}"

    def format_report(self, metrics: dict[str, Any]) -> str:
        """The plain-text report of `zoo evaluate`."""
        return "\n".join(f"{k:<12} {metrics[k]:.4f}" for k in (*self.summary_metrics, "loss") if k in metrics)

    def better(self, new: float, best: float | None) -> bool:
        """Whether ``new`` beats ``best`` on the main metric."""
        if best is None:
            return True
        return new < best if self.lower_is_better else new > best

    def summary(self, metrics: dict[str, Any]) -> str:
        return " ".join(
            f"{k} {metrics[k]:.4f}" for k in self.summary_metrics or (self.main_metric,) if k in metrics
        )

    def labelled(self, table: Table) -> bool:
        """Whether the rows of ``table`` (read by ``read``) can score this task's int8 check
        (``labelled_agreement``); only asked of a task with ``labelled_int8``."""
        return table.labels is not None

    def agreement(self, pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
        """How often two runs of a model (fp32 and int8) give the same answers, over (a, b, mask) batches:
        {"agreement": fraction, "compared": count, "rule": what was compared}. Default: argmax per row."""
        agree = total = 0
        for a, b, _ in pairs:
            pa, pb = a.reshape(a.shape[0], -1).argmax(-1), b.reshape(b.shape[0], -1).argmax(-1)
            agree, total = agree + int((pa == pb).sum()), total + pa.size
        return {"agreement": agree / max(total, 1), "compared": total, "rule": "argmax"}

    def labelled_agreement(
        self, pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], targets: list[Any]
    ) -> dict[str, Any]:
        """``agreement`` on labelled check rows (a task with ``labelled_int8``): ``targets`` holds the target
        of each compared sequence, in order, as ``sequences(targets(...))`` gives them, so that the task can
        score both runs by its metric. Default: ``agreement``, the targets unused."""
        return self.agreement(pairs)

    # ---- the conformance kit ----------------------------------------------------------------------
    def output_shape(self, batch: int, seq: int, num_labels: int) -> tuple[int | None, ...]:
        """The outputs' shape for the kit; None leaves a width to the head (an embedding's dimension)."""
        return (batch, seq, num_labels) if self.per_token else (batch, num_labels)

    def synthetic_labels(self, batch: int, seq: int, num_labels: int, generator: Any) -> Any:
        """Random targets shaped as ``collate`` makes them, for the kit's loss and backward checks (torch)."""
        raise NotImplementedError


# ---- helpers for task plugins ---------------------------------------------------------------------


def class_name(value: Any) -> str:
    """A label cell as a class name: strings stay, integral numbers lose their '.0'."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"label {value!r} must be a string or an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def sort_names(names: Iterable[str]) -> list[str]:
    """Numeric names in numeric order ('2' before '10'), others alphabetically."""
    names = set(names)
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def lookup(index: dict[str, int], name: str) -> int:
    """The id of a label name; an unknown name is a ValueError that lists the known ones."""
    if name not in index:
        shown = ", ".join(list(index)[:10]) + (f", ... ({len(index)} in all)" if len(index) > 10 else "")
        raise ValueError(
            f"label '{name}' is not one of the model's labels ({shown}){did_you_mean(name, index)}"
        )
    return index[name]


def one_line(text: Any) -> str:
    """A text for one line of plain output: newlines and tabs escaped."""
    return str(text).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# ---- finding a model's task -----------------------------------------------------------------------


def head_task(head_ref: str) -> str:
    """The task a registered head serves: its ``task=`` metadata, or the first wave's label format."""
    from .manager import get_registry

    part = get_registry().resolve("head", head_ref)
    task = part.task or LEGACY_LABEL_FORMATS.get(part.capabilities.get("labels", ""))
    if task is None:
        raise ZooError(
            f"head '{part.name}' (plugin '{part.plugin}') names no task; register it with task=..."
        )
    return task


def load_task(choice: PartChoice | str, options: dict[str, Any] | None = None) -> Task:
    """A task object from a recorded choice ('plugin:name' + options) or a name."""
    from .manager import get_registry
    from .spec import PartChoice

    ref, options = (choice.ref, choice.options) if isinstance(choice, PartChoice) else (choice, options or {})
    part = get_registry().resolve("task", ref)
    try:
        task = part.load()(**options)
    except TypeError as exc:
        raise ZooError(f"task '{part.name}' (plugin '{part.plugin}'): {exc}") from None
    if not isinstance(task, Task):
        raise ZooError(
            f"task '{part.name}' (plugin '{part.plugin}') must be a zoo.tasks.Task, got {type(task).__name__}"
        )
    task.name = part.name
    return task


__all__ = [
    "IGNORE_INDEX",
    "Task",
    "class_name",
    "head_task",
    "load_task",
    "log_softmax",
    "lookup",
    "one_line",
    "sigmoid",
    "softmax",
    "sort_names",
]
