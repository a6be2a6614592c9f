"""`zoo export MODEL --hf -o DIR`: a directory transformers loads (config.json, model.safetensors, the
tokenizer, id2label) for a model whose parts map back onto a transformers architecture.

Two parts say how, each through its capability ``hf_export`` (a lazy ``"module:function"`` path):

- the encoder's ``function(model) -> HFEncoder``: the family's transformers config, its class-name stem
  (``"Bert"`` -> BertModel, BertForTokenClassification, ...), where each base-model tensor comes from, and the
  layout of the family's sequence classifier (or a ZooError naming the part with no transformers equivalent);
- the head's ``function(model, encoder: HFEncoder) -> HFExport``: which transformers model it becomes (the
  base model, *ForSequenceClassification, *ForTokenClassification, ...) with every tensor filled, the Auto
  class that loads it back, any files of its own (a sentence-transformers layout), and how its outputs are
  compared.

This module writes the directory atomically, loads it back with transformers, and checks that the loaded
model reproduces zoo's outputs on a padded batch.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ZooError
from .io import check_output, staged_directory

PARITY_TOLERANCE = 1e-5

# A base-model tensor name (without the task model's prefix) -> the zoo tensor(s) it is made of (several are
# concatenated along dim 0, as ModernBERT's fused Wqkv), or None for a buffer that needs none.
Rename = Callable[[str], "str | list[str] | None"]


def refuse(problems: list[str], architecture: str) -> None:
    """One ZooError line naming every part with no transformers equivalent (nothing when there is none)."""
    if problems:
        raise ZooError(f"no transformers equivalent for {architecture}: {', '.join(problems)}")


def plain_token_classifier(head: Any) -> dict[str, str]:
    """*ForTokenClassification of most families: one linear layer per token (the default)."""
    if head.options.get("transform"):
        refuse(
            [f"head '{head.name}' with a transform (the family's token classifier is one linear layer)"],
            "the family's ForTokenClassification",
        )
    return {"classifier": "classifier"}


@dataclass
class HFEncoder:
    """What an encoder's ``hf_export`` function gives: the transformers side of the encoder.

    ``classifier(head)`` (head: the model's head PartChoice) returns the family's *ForSequenceClassification
    head modules as ``{transformers module: zoo head module}`` after checking that the head computes what
    they compute (pooling, pooler, activation), and sets what the config says of them; it raises a ZooError
    naming the mismatch otherwise. ``token_classifier(head)`` does the same for *ForTokenClassification.
    """

    config: Any  # the family's PretrainedConfig: sizes and encoder settings, no task settings yet
    stem: str  # transformers class names are stem + "Model", "ForSequenceClassification", ...
    rename: Rename
    classifier: Callable[[Any], dict[str, str]]
    token_classifier: Callable[[Any], dict[str, str]] = plain_token_classifier
    # the family's *ForMaskedLM head (None: it has none zoo's mlm head computes); its map may also name a
    # transformers tensor by its full name, with the full zoo name as the value ("cls.predictions.bias": "head.bias")
    masked_lm: Callable[[Any], dict[str, str]] | None = None

    def build(self, suffix: str, **settings: Any) -> Any:
        """A fresh transformers model ``stem + suffix`` on a copy of the config updated with ``settings``; a
        base model that may have a pooler gets none (zoo's poolers belong to heads)."""
        import transformers

        name = f"{self.stem}{suffix}"
        cls = getattr(transformers, name, None)
        if cls is None:
            raise ZooError(f"no transformers equivalent: transformers has no {name}")
        config = copy.deepcopy(self.config)
        for key, value in settings.items():
            setattr(config, key, value)
        options = (
            {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls).parameters else {}
        )
        return cls(config, **options).eval()

    def fill(
        self, model: Any, hf_model: Any, head: dict[str, str] | None = None, elsewhere: Iterable[str] = ()
    ) -> Any:
        """Copy the zoo tensors into ``hf_model``: base-model keys through ``rename``, head keys through
        ``head`` (transformers module -> zoo head module, or full tensor name -> full zoo name). A tensor tied
        to a base-model one (a decoder that is the word embeddings) comes from the same zoo tensor. Every
        transformers tensor must come from the model, and every zoo tensor must find a place (an all-zero
        bias may stay behind: it adds nothing), unless it is one of ``elsewhere`` (tensors the head writes to
        files of its own)."""
        import torch

        head = head or {}
        ours = model.state_dict()
        prefix = "" if hf_model.base_model is hf_model else f"{hf_model.base_model_prefix}."
        architecture = type(hf_model).__name__
        buffers = {name for name, _ in hf_model.named_buffers()}
        tied: dict[int, list[str]] = {}
        for name, parameter in hf_model.named_parameters(remove_duplicate=False):
            tied.setdefault(id(parameter), []).append(name)
        aliases = {name: names for names in tied.values() for name in names}
        state, used = {}, set(elsewhere)
        for key in hf_model.state_dict():
            module, _, leaf = key.rpartition(".")
            base = [a for a in aliases.get(key, [key]) if a.startswith(prefix) and a not in head]
            if key in head:
                names: list[str] = [head[key]]
            elif module in head:
                names = [f"head.{head[module]}.{leaf}"]
            elif base:
                found = self.rename(base[0].removeprefix(prefix))
                names = [] if found is None else [found] if isinstance(found, str) else list(found)
                if not names and key in buffers:
                    continue  # a buffer (position_ids) that the model computes for itself
                if not names:
                    refuse([f"nothing in the model computes its '{module}'"], architecture)
            else:
                refuse([f"nothing in the model computes its '{module}'"], architecture)
            missing = [n for n in names if n not in ours]
            if missing:
                raise ZooError(
                    f"the model has no tensor for transformers' '{key}' (looked for '{missing[0]}')"
                )
            state[key] = torch.cat([ours[n] for n in names]) if len(names) > 1 else ours[names[0]]
            used.update(names)
        left = sorted(n for n in set(ours) - used if not (n.endswith(".bias") and not ours[n].any()))
        refuse([f"tensors with no place: {', '.join(left[:3])}"] if left else [], architecture)
        hf_model.load_state_dict(state, strict=False)
        return hf_model


def _logits(model: Any, loaded: Any, ids: Any, mask: Any, directory: Path) -> dict[str, float]:
    """zoo's outputs against the loaded model's logits; per-token outputs at the real positions only."""
    ours = model(ids, mask)
    theirs = loaded(input_ids=ids, attention_mask=mask).logits
    if ours.dim() == 3:
        ours, theirs = ours[mask.bool()], theirs[mask.bool()]
    return {"logits": float((ours - theirs).abs().max())}


@dataclass
class HFExport:
    """What a head's ``hf_export`` function gives: the filled transformers model and how to check it."""

    model: Any  # the transformers model, every tensor filled from zoo's, task settings in its config
    auto_class: str  # the transformers Auto class that loads the directory back ("AutoModel", ...)
    # write(directory): files of the head's own beside transformers' (a sentence-transformers layout)
    write: Callable[[Path], None] | None = None
    # parity(model, loaded, ids, mask, directory) -> {what was compared: max abs difference}; the loaded
    # model is the written directory read back by ``auto_class``
    parity: Callable[[Any, Any, Any, Any, Path], dict[str, float]] = _logits
    kind: str = ""  # what the directory is for, in words ("token classification")


def _capability(kind: str, ref: str) -> Callable[..., Any]:
    from .manager import get_registry

    part = get_registry().resolve(kind, ref)
    target = part.capabilities.get("hf_export")
    if not target:
        raise ZooError(f"{kind} '{part.name}' has no transformers equivalent (no 'hf_export' capability)")
    module, _, attr = str(target).partition(":")
    return getattr(importlib.import_module(module), attr)


def hf_exporter(model: Any) -> Callable[[Any], HFExport]:
    """``exporter(model) -> HFExport``, from the encoder's and the head's ``hf_export`` capabilities."""
    encoder = _capability("encoder", model.spec.encoder.ref)
    head = _capability("head", model.spec.head.ref)
    return lambda m: head(m, encoder(m))


def hf_tokenizer(model: Any, token_types: bool = False):
    """The model's tokenizer as a transformers fast tokenizer with its special tokens named; ``token_types``:
    it gives token_type_ids too (a text pair's second segment is type 1 where the model has two types)."""
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
        model_input_names=["input_ids", *(["token_type_ids"] if token_types else []), "attention_mask"],
        **{k: v for k, v in names.items() if v is not None},
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No transformers chatter in zoo's output: no progress bars ("Writing model shards", "Loading weights")
    and errors only (a base model's absent pooler, when the export is loaded back, is expected, not news)."""
    from transformers.utils import logging

    shown, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if shown:
            logging.enable_progress_bar()


def export_hf(model: Any, output: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write the transformers directory; returns a report with the parity figures."""
    check_output(output, overwrite)
    if getattr(model, "adapter", None) is not None:  # an adapter directory exports as its merged model
        model = model.merged()
    model.eval()
    export = hf_exporter(model)(model)
    hf_model = export.model.eval()
    labels = model.labels
    if labels and len(labels) == hf_model.config.num_labels:
        hf_model.config.id2label = dict(enumerate(labels))
        hf_model.config.label2id = {name: i for i, name in enumerate(labels)}
    tokenizer = hf_tokenizer(model, int(getattr(hf_model.config, "type_vocab_size", 0) or 0) > 1)
    with staged_directory(Path(output)) as tmp, _quiet_transformers():
        hf_model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if export.write is not None:
            export.write(tmp)
        figures = _parity(model, export, tmp)
        diff = max(figures.values())
        if diff > PARITY_TOLERANCE:
            shown = ", ".join(f"{k} {v:.1e}" for k, v in figures.items())
            raise ZooError(
                f"the written transformers model differs from zoo's ({shown}; tolerance {PARITY_TOLERANCE:.0e})"
            )
    return {
        "format": "huggingface",
        "architecture": type(hf_model).__name__,
        "auto_class": export.auto_class,
        "kind": export.kind,
        "max_abs_diff": diff,
        "parity": figures,
    }


def _parity(model: Any, export: HFExport, directory: Path) -> dict[str, float]:
    """The head's figures on a padded batch of random ids, the directory loaded back by its Auto class (called
    inside _quiet_transformers)."""
    import torch
    import transformers

    loaded = getattr(transformers, export.auto_class).from_pretrained(directory).eval()
    generator = torch.Generator().manual_seed(0)
    vocab = int(loaded.config.vocab_size)
    ids = torch.randint(5, vocab, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        return export.parity(model, loaded, ids, mask, directory)
