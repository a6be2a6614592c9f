"""Read a Hugging Face checkpoint: its config.json, its safetensors tensors (a directory that holds only
pickle weights is refused), its tokenizer, and the registered importer for its ``model_type`` that maps the
tensors onto a zoo encoder. zoo.hf assembles a model from what this module reads; zoo.model reads an adapter's
Hugging Face base through :func:`encoder_weights`.
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


def read_checkpoint(path: Path) -> tuple[dict[str, Any], EncoderImport, Any, dict[str, Any]]:
    """config.json, the importer's answer, the tokenizer and tokenizer_config.json of a checkpoint."""
    config = read_config(path)
    importer = importer_for(config, path / CONFIG_NAME)
    tokenizer, tok_config = load_tokenizer(path, config)
    return (
        config,
        importer(Checkpoint(path, config, read_weights(path), tokenizer, tok_config)),
        tokenizer,
        tok_config,
    )


def encoder_weights(path: Path) -> dict[str, Any]:
    """The checkpoint's encoder tensors under zoo's names ('encoder.…'), in float32."""
    import torch

    return {name: t.to(torch.float32) for name, t in read_checkpoint(path)[1].weights.items()}
