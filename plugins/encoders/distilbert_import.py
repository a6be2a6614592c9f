"""The importer for DistilBERT checkpoints (model_type 'distilbert') into the `bert` encoder.

DistilBERT is BERT's post-LN layer under other names, with no token types and no pooler:

    embeddings.{word,position}_embeddings, LayerNorm -> encoder.embeddings.*  (type_vocab_size 0)
    transformer.layer.N.attention.{q,k,v,out}_lin    -> encoder.layer.N.attention.{q,k,v,out}_proj
    transformer.layer.N.sa_layer_norm                -> encoder.layer.N.attention_norm
    transformer.layer.N.ffn.lin1 / ffn.lin2          -> encoder.layer.N.intermediate / output
    transformer.layer.N.output_layer_norm            -> encoder.layer.N.output_norm
    pre_classifier / classifier                      -> head pooler.0 (relu) / classifier

``sinusoidal_pos_embds`` becomes the encoder's ``sinusoidal_positions`` (a fixed table, not trained).
DistilBertForSequenceClassification is zoo's `cls` head with ``pooling=cls, pooler=True,
pooler_activation=relu``.
"""

from __future__ import annotations

import re

from zoo.hf import Checkpoint, EncoderImport

from .bert_import import mlm_weights, pooler_weights

LAYER_RENAMES = {
    "attention.q_lin": "attention.q_proj",
    "attention.k_lin": "attention.k_proj",
    "attention.v_lin": "attention.v_proj",
    "attention.out_lin": "attention.out_proj",
    "sa_layer_norm": "attention_norm",
    "ffn.lin1": "intermediate",
    "ffn.lin2": "output",
    "output_layer_norm": "output_norm",
}


def rename(key: str) -> str | None:
    if key.startswith("embeddings.") and key != "embeddings.position_ids":
        return f"encoder.{key}"
    match = re.match(r"transformer\.layer\.(\d+)\.(.+)\.(weight|bias)$", key)
    if match and match.group(2) in LAYER_RENAMES:
        return f"encoder.layer.{match.group(1)}.{LAYER_RENAMES[match.group(2)]}.{match.group(3)}"
    return None


MLM_HEAD = {"vocab_transform.": "dense.", "vocab_layer_norm.": "norm.", "vocab_projector.bias": "bias"}


def import_distilbert(checkpoint: Checkpoint) -> EncoderImport:
    config = checkpoint.config
    state = checkpoint.without_prefix("distilbert.")
    head = pooler_weights(state, "pre_classifier")
    head.update({key: t for key, t in state.items() if key.startswith("classifier.")})
    head.update(mlm_weights(state, MLM_HEAD))
    return EncoderImport(
        encoder="bert",
        sizes={
            "vocab_size": config["vocab_size"],
            "d_model": config["dim"],
            "num_layers": config["n_layers"],
            "num_heads": config["n_heads"],
            "ffn_dim": config["hidden_dim"],
            "max_length": int(config.get("max_position_embeddings", 512)),
            "dropout": config.get("dropout", 0.1),
        },
        encoder_options={
            "layer_norm_eps": 1e-12,
            "hidden_act": config.get("activation", "gelu"),
            "type_vocab_size": 0,
            "sinusoidal_positions": bool(config.get("sinusoidal_pos_embds")),
        },
        weights={name: t for key, t in state.items() if (name := rename(key)) is not None},
        head_weights=head,
        head_options={
            "pooler_activation": "relu",
            "transform_activation": config.get("activation", "gelu"),
            "transform_norm_eps": 1e-12,
        },
    )
