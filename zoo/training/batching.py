"""Batches: length-grouped order, split across accumulation steps and processes, padded to the longest."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from zoo.data import pad


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                  group_by_length: bool = True, mega_batches: int = 50) -> list[np.ndarray]:
    """The global batches (index arrays) of one epoch; the same on every process for a seed and epoch.

    Length grouping: shuffle, cut into mega-batches of ``mega_batches`` batches, sort each by length,
    cut into batches, shuffle the batch order. Batches then pad little yet stay random.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    lengths = np.asarray(lengths)
    mega = batch_size * mega_batches
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def micro_batch(batch: np.ndarray, micro: int, grad_accum: int, rank: int, world_size: int) -> np.ndarray:
    """This process's rows of micro-step ``micro``: the batch cut into grad_accum × world_size pieces.
    A piece never comes out empty: a batch smaller than the number of pieces lends rows cyclically."""
    pieces = grad_accum * world_size
    if len(batch) < pieces:
        batch = np.resize(batch, pieces)
    return np.array_split(batch, pieces)[micro * world_size + rank]


class Collate:
    """Index array -> dict of tensors: input_ids, attention_mask (padded to the longest row) and labels
    (the targets collated by the task)."""

    def __init__(self, ids: list[np.ndarray], labels: list[Any] | None, pad_id: int, task: Any):
        self.ids, self.labels, self.pad_id, self.task = ids, labels, pad_id, task

    def __call__(self, index: np.ndarray) -> dict[str, Any]:
        import torch

        rows = [self.ids[i] for i in index]
        input_ids = pad(rows, self.pad_id)
        mask = pad([np.ones(len(r), dtype=np.int64) for r in rows], 0)
        out = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if self.labels is not None:
            out["labels"] = self.task.collate([self.labels[i] for i in index])
        return out
