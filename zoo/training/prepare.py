"""Fit a model to a data set before training: the starting model, its label set and head size, and a
tokenizer for a model that has none."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data import Table
from zoo.errors import ZooError
from zoo.manager import get_registry

from .config import TrainConfig


def load_start_model(model: Any, seed: int = 0):
    """A ZooModel, a zoo model directory, or a Hugging Face BERT directory (imported on the fly)."""
    from zoo.hf import import_pretrained, is_hf_checkpoint
    from zoo.model import ZooModel, load_model

    if isinstance(model, ZooModel):
        return model
    path = Path(model)
    if not path.exists():
        raise ZooError(f"{path}: no such model directory")
    return import_pretrained(path, seed=seed) if is_hf_checkpoint(path) else load_model(path)


def fit_labels(model, table: Table, seed: int) -> list[str] | None:
    """Record the data's label set; a head that was never trained is rebuilt for the right label count."""
    task = model.task
    names = task.label_names(table, model.spec.labels)
    count = task.num_labels(table, names)
    if count is None:  # the head decides its own width (an embedding): nothing to fit
        return names
    fresh = model.spec.labels is None and "training" not in model.spec.extra
    if fresh and count != model.spec.sizes["num_labels"]:
        replace_head(model, count, seed)
    if count != model.spec.sizes["num_labels"]:  # a trained head keeps its size: the data must fit it
        what = "labels" if task.named_labels else "outputs per label"
        raise ZooError(
            f"{table.source}: {count} {what} in the data but the model's head predicts "
            f"{model.spec.sizes['num_labels']}"
        )
    if task.named_labels:
        model.spec.labels = names
    return names


def replace_head(model, num_labels: int, seed: int) -> None:
    """A new head with ``num_labels`` outputs. Only tensors an imported checkpoint brought (its pooler) are
    kept, where their shapes still fit; everything else in the head starts fresh."""
    part = get_registry().resolve("head", model.spec.head.ref)
    torch.manual_seed(seed)
    sizes = model.spec.sizes
    head = part.load()(
        d_model=getattr(model.encoder, "d_model", sizes["d_model"]),
        num_labels=num_labels,
        dropout=sizes["dropout"],
        **model.spec.head.options,
    )
    imported = tuple(
        f"{p}." for p in model.spec.extra.get("source", {}).get("imported", ()) if p.startswith("head.")
    )
    old, new = model.head.state_dict(), head.state_dict()
    head.load_state_dict(
        {
            k: old[k] if f"head.{k}".startswith(imported) and k in old and old[k].shape == v.shape else v
            for k, v in new.items()
        }
    )
    model.head = head
    sizes["num_labels"] = num_labels


DEFAULT_HEAD = "cls"  # the head a pre-trained (mlm) model is fine-tuned with unless --head names another


def replace_pretraining_head(model, head: str, seed: int) -> None:
    """Swap a pre-training head (mlm) for a fresh ``head`` serving its own task; the encoder stays. The
    pre-training record moves to ``extra["pretraining"]``, so the new head is fitted to the data's labels."""
    from zoo.model import part_options, served_task, tie_head
    from zoo.spec import PartChoice

    part = get_registry().resolve("head", head)
    task = served_task(part)
    if getattr(model.task.__class__, "pretraining", False) and task.name == model.spec.task.name:
        raise ZooError(f"head '{part.name}' is a pre-training head; fine-tune with a task head (--head cls)")
    options = part_options(part, {})
    torch.manual_seed(seed)
    sizes = model.spec.sizes
    new = part.load()(
        d_model=getattr(model.encoder, "d_model", sizes["d_model"]),
        num_labels=sizes["num_labels"],
        dropout=sizes["dropout"],
        **options,
    )
    tie_head(new, model.encoder)
    model.head = new
    model.spec.head = PartChoice(part.name, part.plugin, options)
    model.spec.task = PartChoice(task.name, task.plugin, part_options(task, {}))
    model.spec.labels = None
    extra = model.spec.extra
    extra["pretraining"] = extra.pop("training", None) or extra.get("pretraining")
    if extra["pretraining"] is None:
        del extra["pretraining"]


def ensure_tokenizer(model, table: Table) -> None:
    """A model built from scratch gets a WordPiece tokenizer trained on the training text."""
    if model.tokenizer is not None:
        return
    fit_tokenizer(model, [*table.texts, *(table.pairs or [])], table.source)


def fit_tokenizer(model, texts: Iterable[Any], source: str) -> None:
    """A WordPiece tokenizer trained on ``texts`` (read once: a stream will do) for the model's vocabulary."""
    from zoo.tokenizer import pad_id, train_wordpiece

    model.tokenizer = train_wordpiece(texts, vocab_size=model.spec.sizes["vocab_size"])
    model.spec.tokenizer.update(
        {"pad_id": pad_id(model.tokenizer), "lowercase": True, "trained_on": Path(source).name}
    )
    sep = model.tokenizer.token_to_id("[SEP]")
    if hasattr(model.encoder, "sep_token_id") and model.encoder.sep_token_id is None:
        model.encoder.sep_token_id = sep  # text pairs get segment B after the first [SEP]
        model.spec.encoder.options["sep_token_id"] = sep


def max_length(model, requested: int) -> int:
    limit = model.spec.tokenizer.get("max_length") or model.spec.sizes["max_length"]
    used = int(min(requested, limit, model.spec.sizes["max_length"]))
    if (
        used < requested != TrainConfig.max_length and os.environ.get("RANK", "0") == "0"
    ):  # not the default's cap
        print(
            f"zoo: --max-length {requested} is more than this model takes; texts are cut at {used} tokens",
            file=sys.stderr,
        )
    return used


def lengths(ids: list) -> np.ndarray:
    """Tokens per row; a row of several sequences counts its longest."""
    return np.fromiter(
        (len(r) if isinstance(r, np.ndarray) else max(map(len, r), default=0) for r in ids),
        dtype=np.int64,
        count=len(ids),
    )
