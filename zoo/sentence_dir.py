"""Read a sentence-transformers directory (modules.json, 1_Pooling/config.json, a Dense and a Normalize
module, sentence_bert_config.json) as embedding-head options, so an import encodes as
``SentenceTransformer(dir).encode`` does; and write one (:func:`write`) for `zoo export --hf`. JSON and
safetensors only; sentence-transformers is not needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ZooError
from .io import read_json, write_json

MODULES = "modules.json"
# 1_Pooling/config.json flag -> zoo's pooling name
POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean-sqrt-len",
    "pooling_mode_weightedmean_tokens": "weighted-mean",
    "pooling_mode_lasttoken": "last",
}
# 1_Pooling/config.json "pooling_mode" (sentence-transformers 5+) -> zoo's pooling name
POOLING_MODES = {
    "cls": "cls",
    "mean": "mean",
    "max": "max",
    "mean_sqrt_len_tokens": "mean-sqrt-len",
    "weightedmean": "weighted-mean",
    "lasttoken": "last",
}
ACTIVATIONS = {"Tanh": "tanh", "Identity": "identity", "ReLU": "relu", "GELU": "gelu"}
# zoo's Dense activation -> the torch class sentence-transformers writes (and imports when it loads)
ACTIVATION_CLASSES = {
    "tanh": "torch.nn.modules.activation.Tanh",
    "identity": "torch.nn.modules.linear.Identity",
    "relu": "torch.nn.modules.activation.ReLU",
    "gelu": "torch.nn.modules.activation.GELU",
}


def modules(path: Path) -> list[dict[str, Any]]:
    """The entries of modules.json ([] when the directory has none)."""
    data = read_json(path / MODULES, missing_ok=True)
    if data == {}:  # no modules.json
        return []
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and isinstance(m.get("type"), str) for m in data
    ):
        raise ZooError(f"{path / MODULES}: expected a list of modules, each with a 'type'")
    return data


def kind(module: dict[str, Any]) -> str:
    return module["type"].rsplit(".", 1)[-1]


def is_sentence_transformers(path: str | Path) -> bool:
    """A directory whose modules.json has a Pooling module: an embedding model."""
    return any(kind(m) == "Pooling" for m in modules(Path(path)))


def _module_dir(path: Path, module: dict[str, Any]) -> Path:
    sub = str(module.get("path") or "")
    if Path(sub).is_absolute() or ".." in Path(sub).parts:
        raise ZooError(f"{path / MODULES}: module path {sub!r} must stay inside the directory")
    return path / sub


def head_options(path: str | Path) -> dict[str, Any]:
    """Embedding-head options: pooling, normalize and the dense projection the directory describes."""
    path = Path(path)
    found = modules(path)
    kinds = [kind(m) for m in found]
    options: dict[str, Any] = {"normalize": "Normalize" in kinds}
    for module in found:
        if kind(module) == "Pooling":
            options["pooling"] = pooling_mode(_module_dir(path, module) / "config.json")
    dense = [m for m in found if kind(m) == "Dense"]
    if len(dense) > 1:
        raise ZooError(f"{path / MODULES}: {len(dense)} Dense modules; zoo imports at most one")
    if dense:
        config = read_json(_module_dir(path, dense[0]) / "config.json")
        activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh")).rsplit(
            ".", 1
        )[-1]
        if activation not in ACTIVATIONS:
            raise ZooError(
                f"{path / MODULES}: Dense activation '{activation}' is not supported "
                f"(choices: {', '.join(ACTIVATIONS)})"
            )
        options.update(
            dense_dim=int(config["out_features"]),
            dense_bias=bool(config.get("bias", True)),
            dense_activation=ACTIVATIONS[activation],
        )
    unknown = sorted(set(kinds) - {"Transformer", "Pooling", "Dense", "Normalize"})
    if unknown:
        raise ZooError(
            f"{path / MODULES}: module {unknown[0]} is not supported (zoo imports Transformer, "
            "Pooling, Dense and Normalize)"
        )
    return options


def pooling_mode(config_file: Path) -> str:
    """The one pooling a Pooling config names: "pooling_mode" (a name or a list), or the older flags."""
    config = read_json(config_file)
    config = config if isinstance(config, dict) else {}
    given = config.get("pooling_mode")
    if given is not None:
        names = [given] if isinstance(given, str) else list(given) if isinstance(given, list) else [given]
        modes = [POOLING_MODES.get(n, f"unknown mode {n!r}") for n in names]
    else:
        modes = [name for flag, name in POOLING_FLAGS.items() if config.get(flag)]
    if len(modes) != 1 or modes[0] not in POOLING_MODES.values():
        raise ZooError(
            f"{config_file}: expected exactly one supported pooling mode, got {modes or 'none'} "
            f"(zoo pools with one of {', '.join(POOLING_MODES)}, never a concatenation)"
        )
    return modes[0]


def head_weights(path: str | Path) -> dict[str, Any]:
    """The Dense module's tensors under the embedding head's names (dense.weight, dense.bias)."""
    from safetensors.torch import load_file

    path = Path(path)
    out: dict[str, Any] = {}
    for module in modules(path):
        if kind(module) != "Dense":
            continue
        file = _module_dir(path, module) / "model.safetensors"
        if not file.is_file():
            raise ZooError(f"{file.parent}: no model.safetensors for the Dense module (zoo never unpickles)")
        for name, tensor in load_file(str(file)).items():
            out[f"dense.{name.rsplit('.', 1)[-1]}"] = tensor
    return out


def max_seq_length(path: str | Path) -> int | None:
    """Where sentence-transformers cuts text (sentence_bert_config.json), if the directory says."""
    data = read_json(Path(path) / "sentence_bert_config.json", missing_ok=True)
    value = data.get("max_seq_length") if isinstance(data, dict) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def is_cross_encoder(path: str | Path) -> bool:
    """A sentence-transformers CrossEncoder directory (config_sentence_transformers.json says so, or config.json
    names its activation: ``sentence_transformers.activation_fn``, before version 4
    ``sbert_ce_default_activation_function``): a reranker."""
    path = Path(path)
    data = read_json(path / "config_sentence_transformers.json", missing_ok=True)
    if isinstance(data, dict) and data.get("model_type") == "CrossEncoder":
        return True
    config = read_json(path / "config.json", missing_ok=True)
    if not isinstance(config, dict):
        return False
    settings = config.get("sentence_transformers")  # sentence-transformers 4+ (and zoo export --hf)
    return "sbert_ce_default_activation_function" in config or (
        isinstance(settings, dict) and "activation_fn" in settings
    )


def write(
    path: str | Path,
    *,
    dim: int,
    pooling: str,
    normalize: bool,
    max_seq_length: int,
    dense: dict[str, Any] | None = None,
) -> None:
    """The sentence-transformers files beside a transformers model in ``path``: modules.json (Transformer,
    Pooling, an optional Dense, an optional Normalize), 1_Pooling/config.json, 2_Dense/ (config.json and
    model.safetensors: ``dense`` holds weight, bias (or None) and activation), sentence_bert_config.json and
    config_sentence_transformers.json, in the layout every sentence-transformers since 2.x reads."""
    from safetensors.torch import save_file

    path = Path(path)
    flags = {flag: name == pooling for flag, name in POOLING_FLAGS.items()}
    if not any(flags.values()):
        raise ZooError(f"no sentence-transformers equivalent for pooling '{pooling}'")
    found = [("", "Transformer"), ("1_Pooling", "Pooling")]
    write_json(path / "1_Pooling" / "config.json", {"word_embedding_dimension": dim, **flags})
    if dense is not None:
        activation = dense["activation"]
        if activation not in ACTIVATION_CLASSES:
            raise ZooError(f"no sentence-transformers equivalent for a Dense activation '{activation}'")
        weight, bias = dense["weight"], dense["bias"]
        found.append(("2_Dense", "Dense"))
        (path / "2_Dense").mkdir(exist_ok=True)
        tensors = {"linear.weight": weight.detach().contiguous()}
        if bias is not None:
            tensors["linear.bias"] = bias.detach().contiguous()
        save_file(tensors, str(path / "2_Dense" / "model.safetensors"))
        write_json(
            path / "2_Dense" / "config.json",
            {
                "in_features": int(weight.shape[1]),
                "out_features": int(weight.shape[0]),
                "bias": bias is not None,
                "activation_function": ACTIVATION_CLASSES[activation],
            },
        )
    if normalize:
        found.append((f"{len(found)}_Normalize", "Normalize"))
    write_json(
        path / MODULES,
        [
            {"idx": i, "name": str(i), "path": sub, "type": f"sentence_transformers.models.{kind}"}
            for i, (sub, kind) in enumerate(found)
        ],
    )
    write_json(path / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    write_json(
        path / "config_sentence_transformers.json",
        {"model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None},
    )
