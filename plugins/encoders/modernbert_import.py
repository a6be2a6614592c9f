"""The importer for ModernBERT checkpoints (model_type 'modernbert') into the `modernbert` encoder.

    embeddings.tok_embeddings / norm          -> encoder.embeddings.tok_embeddings / norm
    layers.N.attn.Wqkv (q, k, v stacked)      -> encoder.layers.N.attention.{q,k,v}_proj
    layers.N.attn.Wo                          -> encoder.layers.N.attention.out_proj
    layers.N.{attn_norm, mlp_norm}            -> encoder.layers.N.{attn_norm, mlp_norm}
    layers.N.mlp.{Wi, Wo}                     -> encoder.layers.N.mlp.{wi, wo}
    final_norm                                -> encoder.final_norm
    head.dense / head.norm, classifier        -> head pooler.0 / pooler.2 (pooler_norm), classifier; for a
                                                 token-cls head transform.0 / transform.2, classifier

zoo's attentions and the head's pooler keep biases; where the checkpoint has none (``attention_bias``,
``classifier_bias``, ``norm_bias`` false) they are imported as zeros, which computes the same.
"""

from __future__ import annotations

import re

import torch

from zoo.errors import ZooError
from zoo.hf import Checkpoint, EncoderImport

RENAMES = {"attn.Wo": "attention.out_proj", "mlp.Wi": "mlp.wi", "mlp.Wo": "mlp.wo"}


def _with_zero_bias(weights: dict, name: str, size: int) -> None:
    if f"{name}.weight" in weights and f"{name}.bias" not in weights:
        weights[f"{name}.bias"] = torch.zeros(size)


def _global_every(config: dict, where) -> int:
    every = int(config.get("global_attn_every_n_layers", 3))
    layer_types = config.get("layer_types")
    if layer_types:
        expected = ["sliding_attention" if i % every else "full_attention" for i in range(len(layer_types))]
        if list(layer_types) != expected:
            raise ZooError(f"{where}: layer_types other than a global layer every {every} are not supported")
    return every


def _theta(config: dict, layer_type: str, legacy: str, default: float) -> float:
    rope = (config.get("rope_parameters") or {}).get(layer_type) or {}
    return float(rope.get("rope_theta", config.get(legacy, default)))


def import_modernbert(checkpoint: Checkpoint) -> EncoderImport:
    config = checkpoint.config
    state = checkpoint.without_prefix("model.")
    d_model = int(config["hidden_size"])
    weights: dict = {}
    for key, tensor in state.items():
        if key.startswith(("embeddings.", "final_norm.")):
            weights[f"encoder.{key}"] = tensor
            continue
        match = re.match(r"layers\.(\d+)\.(.+)\.(weight|bias)$", key)
        if not match:
            continue
        layer, module, leaf = match.groups()
        prefix = f"encoder.layers.{layer}"
        if module == "attn.Wqkv":
            for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                weights[f"{prefix}.attention.{name}.{leaf}"] = part
        else:
            weights[f"{prefix}.{RENAMES.get(module, module)}.{leaf}"] = tensor
    for name in [k[: -len(".weight")] for k in list(weights) if k.endswith(".weight")]:
        if name.endswith("_proj"):
            _with_zero_bias(weights, name, d_model)
    head = {f"pooler.0.{k.rsplit('.', 1)[1]}": t for k, t in state.items() if k.startswith("head.dense.")}
    head.update(
        {f"pooler.2.{k.rsplit('.', 1)[1]}": t for k, t in state.items() if k.startswith("head.norm.")}
    )
    head.update({k: t for k, t in state.items() if k.startswith("classifier.")})
    for name in ("pooler.0", "pooler.2"):
        _with_zero_bias(head, name, d_model)
    # the same dense and norm before a token classifier (ModernBertForTokenClassification): the token-cls transform;
    # and before ModernBertForMaskedLM's decoder (tied to the embeddings, with a bias): the mlm head's
    head.update({f"transform.{k.split('.', 1)[1]}": t for k, t in head.items() if k.startswith("pooler.")})
    if any(str(a).endswith("ForMaskedLM") for a in config.get("architectures") or []):
        head.update({f"dense.{k.split('.', 2)[2]}": t for k, t in head.items() if k.startswith("pooler.0.")})
        head.update({f"norm.{k.split('.', 2)[2]}": t for k, t in head.items() if k.startswith("pooler.2.")})
        if "decoder.bias" in state:  # without one (decoder_bias false) the tied head's bias stays zero
            head["bias"] = state["decoder.bias"]
    return EncoderImport(
        encoder="modernbert",
        sizes={
            "vocab_size": config["vocab_size"],
            "d_model": d_model,
            "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"],
            "ffn_dim": config["intermediate_size"],
            "max_length": int(config.get("max_position_embeddings", 8192)),
            "dropout": float(config.get("mlp_dropout", 0.0)),
        },
        encoder_options={
            "global_attn_every_n_layers": _global_every(config, checkpoint.config_file),
            "local_attention": int(config.get("local_attention", 128)),
            "global_rope_theta": _theta(config, "full_attention", "global_rope_theta", 160000.0),
            "local_rope_theta": _theta(config, "sliding_attention", "local_rope_theta", 10000.0),
            "norm_eps": float(config.get("norm_eps", 1e-5)),
            "norm_bias": bool(config.get("norm_bias", False)),
            "mlp_bias": bool(config.get("mlp_bias", False)),
            "hidden_act": config.get("hidden_activation", "gelu"),
        },
        weights=weights,
        head_weights=head,
        head_options={
            "pooling": config.get("classifier_pooling", "cls"),
            "pooler_activation": config.get("classifier_activation", "gelu"),
            "pooler_norm": True,
            "transform_activation": config.get("classifier_activation", "gelu"),
            "transform_norm_eps": float(config.get("norm_eps", 1e-5)),
        },
    )
