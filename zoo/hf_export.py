"""`zoo export MODEL --hf -o DIR`: a directory transformers loads (config.json, model.safetensors, the
tokenizer, id2label) for a model whose parts map back onto a transformers architecture.

The encoder says how, through its capability ``hf_export``: a lazy ``"module:function"`` path to
``function(model) -> transformers.PreTrainedModel`` that builds the transformers model and fills every one of
its tensors from the zoo model (or raises ZooError naming the part with no transformers equivalent). This
module writes the directory atomically and checks that the written model, loaded back by transformers,
reproduces zoo's outputs on a padded batch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .errors import ZooError
from .io import check_output, staged_directory

PARITY_TOLERANCE = 1e-5


def hf_exporter(model: Any):
    from .manager import get_registry

    part = get_registry().resolve("encoder", model.spec.encoder.ref)
    target = part.capabilities.get("hf_export")
    if not target:
        raise ZooError(f"encoder '{part.name}' has no transformers equivalent (no 'hf_export' capability)")
    module, _, attr = str(target).partition(":")
    return getattr(importlib.import_module(module), attr)


def hf_tokenizer(model: Any):
    """The model's tokenizer as a transformers fast tokenizer with its special tokens named."""
    from transformers import PreTrainedTokenizerFast

    if model.tokenizer is None:
        raise ZooError("the model has no tokenizer to export")
    vocab = model.tokenizer.get_vocab()
    names: dict[str, str | None] = {}
    for key, bert_name, roberta_name in (
        ("unk_token", "[UNK]", "<unk>"),
        ("pad_token", "[PAD]", "<pad>"),
        ("cls_token", "[CLS]", "<s>"),
        ("sep_token", "[SEP]", "</s>"),
        ("mask_token", "[MASK]", "<mask>"),
    ):
        names[key] = bert_name if bert_name in vocab else roberta_name if roberta_name in vocab else None
    max_length = int(model.spec.tokenizer.get("max_length", 512))
    return PreTrainedTokenizerFast(
        tokenizer_object=model.tokenizer,
        model_max_length=max_length,
        **{k: v for k, v in names.items() if v is not None},
    )


def export_hf(model: Any, output: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write the transformers directory; returns a report with the parity figure."""
    check_output(output, overwrite)
    hf_model = hf_exporter(model)(model).eval()
    labels = model.labels
    if labels:
        hf_model.config.id2label = dict(enumerate(labels))
        hf_model.config.label2id = {name: i for i, name in enumerate(labels)}
    diff = _parity(model, hf_model)
    if diff > PARITY_TOLERANCE:
        raise ZooError(
            f"the transformers model differs from zoo's by {diff:.1e} (tolerance {PARITY_TOLERANCE:.0e})"
        )
    tokenizer = hf_tokenizer(model)
    with staged_directory(Path(output)) as tmp:
        hf_model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return {"format": "huggingface", "architecture": type(hf_model).__name__, "max_abs_diff": diff}


def _parity(model: Any, hf_model: Any) -> float:
    """Max abs difference of the outputs on a padded batch of random ids (real positions for per-token)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = int(hf_model.config.vocab_size)
    ids = torch.randint(5, vocab, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    model.eval()
    with torch.no_grad():
        ours = model(ids, mask)
        theirs = hf_model(input_ids=ids, attention_mask=mask).logits
    return float((ours - theirs).abs().max())
