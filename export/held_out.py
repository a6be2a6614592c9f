"""The data int8 is calibrated on and checked against: real text wherever there is some, never the same rows.

Two kinds of model are checked differently. A task with ``labelled_int8`` (embeddings, reranking) is judged
by the metric its users care about, so it takes labelled rows when it can get them: the ``--calibration-data``
file read the task's way (anchor,positive pairs; query,text,label rows), else the training and evaluation
files recorded in the model directory. The rows are encoded as the task encodes them (a reranker's
(query, text) pairs, an embedding model's anchors and positives), so int8 is calibrated on what it will
see; the check rows' targets travel with the batches so that the task can score fp32 and int8 on them
(ndcg@10 of each). Any other model, or one without labelled rows, gets texts: the given ones, else those of
its training file (calibrating) and evaluation file (checking: a fine-tuned model is surer of the texts it was
fitted to, so agreement measured on them flatters int8, bench/NOTES.md #39), or generated ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError

from .quantize import Batches, generated_batches, text_batches

CALIBRATION_SHARE, MAX_CALIBRATION_ROWS, MAX_TEXTS = 3, 256, 1000
MAX_LABELLED_ROWS = 500  # labelled check rows (an embedding pair is two sequences, so up to 1000 texts)
CHECK_BATCH = 32


@dataclass
class HeldOut:
    check: Batches  # (input_ids, attention_mask) batches the agreement is measured on
    calibration: Batches  # the batches static ranges come from (never the check rows)
    source: str  # where they came from, for the manifest
    targets: list[Any] | None = None  # the task's target per check sequence, in batch order (labelled data)


def held_out(model, tokenizer, texts, sizes, pad: int, file: str | Path | None = None, **read) -> HeldOut:
    """Labelled rows for a ``labelled_int8`` task when there are some, else texts, else generated ids.
    ``texts``: given texts; ``file``: a --calibration-data file (``read``: text_column, encoding)."""
    task = model.task
    if tokenizer is not None and getattr(task, "labelled_int8", False):
        labelled = _labelled(model, tokenizer, file, sizes["max_length"], read.get("encoding"))
        if labelled is not None:
            return labelled
    if file is not None:
        texts = file_texts(file, read.get("text_column"), read.get("encoding"))
    source = "--calibration-data" if texts else None
    evaluation: list[str] = []
    if not texts and tokenizer is not None:
        texts, source = recorded_texts(model, "train"), "training data"
        evaluation = recorded_texts(model, "eval") if texts else []
    if not texts:
        vocab, longest = sizes["vocab_size"], sizes["max_length"]
        return HeldOut(
            generated_batches(vocab, longest, pad),
            generated_batches(vocab, longest, pad, seed=8),
            "generated ids",
        )
    texts = sample(list(texts), MAX_TEXTS)
    if evaluation:  # a fine-tuned model is surer of its training texts: agreement there flatters int8
        calibration, check = sample(texts, MAX_CALIBRATION_ROWS), sample(evaluation, MAX_TEXTS)
        source = "training data calibrates, evaluation data checks"
    else:
        calibration, check = split(texts)
    longest = sizes["max_length"]
    return HeldOut(
        text_batches(tokenizer, check, longest),
        text_batches(tokenizer, calibration, longest),
        f"{source}: {len(calibration)} calibrate, {len(check)} check agreement",
    )


def sample(items: list, most: int) -> list:
    """At most ``most`` of the items, a fixed random sample in their order."""
    if len(items) <= most:
        return items
    return [items[i] for i in sorted(np.random.default_rng(0).choice(len(items), most, replace=False))]


def split(items: list) -> tuple[list, list]:
    """(calibration, check): one item in CALIBRATION_SHARE calibrates (at most MAX_CALIBRATION_ROWS) and the
    rest check, so the check never sees the calibration items; a single item does both."""
    calibration = items[::CALIBRATION_SHARE][:MAX_CALIBRATION_ROWS]
    check = [
        t
        for i, t in enumerate(items)
        if i % CALIBRATION_SHARE or i // CALIBRATION_SHARE >= MAX_CALIBRATION_ROWS
    ]
    return calibration, check or calibration


def _labelled(model, tokenizer, file, longest: int, encoding: str | None) -> HeldOut | None:
    """Calibration and check batches from labelled rows, or None when there are none. A --calibration-data
    file the task cannot read is an error for a task that takes no single texts (a reranker), else None."""
    task = model.task
    if file is not None:
        try:
            table = task.read(file, encoding=encoding)
        except ZooError:
            if getattr(task, "single_texts", True):
                return None  # plain texts: the caller reads them
            raise
        if not task.labelled(table):
            return None
        calibration, check = split_table(table)
        return _batches(task, tokenizer, calibration, check, longest, f"--calibration-data {file}")
    record = model.spec.extra.get("training") or {}
    tables = {}
    for role in ("train", "eval"):
        path = record.get(role)
        if path and Path(path).is_file():
            try:
                table = task.read(path)
            except ZooError:
                continue
            if task.labelled(table):
                tables[role] = table
    if not tables:
        return None
    if "eval" in tables and "train" in tables:  # calibrate on training rows, check on the held-out ones
        calibration = tables["train"].select(sample(list(range(len(tables["train"]))), MAX_CALIBRATION_ROWS))
        check = tables["eval"].select(sample(list(range(len(tables["eval"]))), MAX_LABELLED_ROWS))
        how = "training data calibrates, evaluation data checks"
    else:
        calibration, check = split_table(next(iter(tables.values())))
        how = f"{next(iter(tables))} data recorded in the model directory"
    return _batches(task, tokenizer, calibration, check, longest, how)


def split_table(table):
    rows = sample(list(range(len(table))), MAX_CALIBRATION_ROWS + MAX_LABELLED_ROWS)
    calibration, check = split(rows)
    return table.select(calibration), table.select(check)


def _batches(task, tokenizer, calibration, check, longest: int, how: str) -> HeldOut:
    """The task's sequences of each table's rows in batches; the check's targets in the same order."""
    from zoo.data import pad as pad_rows
    from zoo.tokenizer import ids_of, pad_id

    value = pad_id(tokenizer)

    def batches(table) -> tuple[Batches, list[Any]]:
        encodings = task.inputs(tokenizer, table, longest)
        ids = task.sequences(ids_of(encodings))
        targets = task.sequences(task.targets(table, None, task.num_outputs or 1, encodings))
        out = []
        for start in range(0, len(ids), CHECK_BATCH):
            rows = ids[start : start + CHECK_BATCH]
            out.append((pad_rows(rows, value), pad_rows([np.ones(len(r), dtype=np.int64) for r in rows], 0)))
        return out, targets

    check_batches, targets = batches(check)
    calibration_batches, _ = batches(calibration)
    return HeldOut(
        check_batches,
        calibration_batches,
        f"{how}: {len(calibration)} rows calibrate, {len(check)} labelled rows check "
        f"({task.name} metric against fp32)",
        targets,
    )


def file_texts(path, text_column: str | None, encoding: str | None = None) -> list[str]:
    """The texts of a --calibration-data file (labels, if any, are not needed)."""
    from zoo.data import read_table

    return _texts(read_table(path, text_column=text_column, require_labels=False, encoding=encoding))


def recorded_texts(model, role: str = "train") -> list[str]:
    """The texts of the training ("train") or evaluation ("eval") file recorded in the model directory, or []
    when none is recorded or it is gone or unreadable."""
    from zoo.data import read_table

    path = (model.spec.extra.get("training") or {}).get(role)
    if not path or not Path(path).is_file():
        return []
    try:
        table = read_table(path, require_labels=False)
    except ZooError:
        try:  # a task's own layout (an embedding model's anchor,positive pairs): each text in it
            table = model.task.read(path)
        except ZooError:
            return []
        return [*table.texts, *(table.pairs or [])]
    return _texts(table)


def _texts(table) -> list[str]:
    """A classification table's texts, a text pair joined by a space."""
    return [t if isinstance(t, str) else " ".join(t) for t in table.texts]
