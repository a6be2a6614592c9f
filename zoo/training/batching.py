"""Batches: length-grouped order, split across accumulation steps and processes, padded to the longest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.data import pad


def epoch_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    group_by_length: bool = True,
    mega_batches: int = 50,
) -> list[np.ndarray]:
    """The global batches (index arrays) of one epoch; the same on every process for a seed and epoch.

    Length grouping: shuffle, cut into mega-batches of ``mega_batches`` batches, sort each by length,
    cut into batches, shuffle the batch order. Batches then pad little yet stay random.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    lengths = np.asarray(lengths)
    mega = batch_size * mega_batches
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def without_duplicates(
    batches: list[np.ndarray], keys: Sequence[Sequence[Any]], batch_size: int
) -> list[np.ndarray]:
    """The same number of batches, none holding two rows that share a key (a text), where that is
    possible: each row goes to the first batch, from its own on, with room and none of its keys; a row
    that fits nowhere keeps its place. Deterministic, so every process makes the same batches."""
    rooms: list[list[int]] = [[] for _ in batches]
    seen: list[set] = [set() for _ in batches]
    for home, batch in enumerate(batches):
        for row in batch.tolist():
            row_keys = set(keys[row])
            for b in (*range(home, len(batches)), *range(home)):
                if len(rooms[b]) < batch_size and not row_keys & seen[b]:
                    break
            else:
                b = next(b for b in (*range(home, len(batches)), *range(home)) if len(rooms[b]) < batch_size)
            rooms[b].append(row)
            seen[b] |= row_keys
    return [np.asarray(r, dtype=np.int64) for r in rooms if r]


def micro_batch(batch: np.ndarray, micro: int, grad_accum: int, rank: int, world_size: int) -> np.ndarray:
    """This process's rows of micro-step ``micro``: the batch cut into grad_accum × world_size pieces.
    A piece never comes out empty: a batch smaller than the number of pieces lends rows cyclically."""
    pieces = grad_accum * world_size
    if len(batch) < pieces:
        batch = np.resize(batch, pieces)
    return np.array_split(batch, pieces)[micro * world_size + rank]


class Collate:
    """Index array -> dict of tensors: input_ids, attention_mask (padded to the longest row), labels (the
    targets collated by the task) and, when rows carry loss weights (windows of long texts), weights."""

    def __init__(
        self,
        ids: list[np.ndarray],
        labels: list[Any] | None,
        pad_id: int,
        task: Any,
        weights: np.ndarray | None = None,
    ):
        self.ids, self.labels, self.pad_id, self.task, self.weights = ids, labels, pad_id, task, weights

    def __call__(self, index: np.ndarray) -> dict[str, Any]:
        import torch

        rows = self.task.sequences([self.ids[i] for i in index])  # a row may hold several sequences
        input_ids = pad(rows, self.pad_id)
        mask = pad([np.ones(len(r), dtype=np.int64) for r in rows], 0)
        out = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if self.labels is not None:
            out["labels"] = self.task.collate(self.task.sequences([self.labels[i] for i in index]))
        if self.weights is not None:
            out["weights"] = torch.from_numpy(self.weights[np.asarray(index)])
        return out
