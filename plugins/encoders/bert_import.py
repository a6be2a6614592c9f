"""The importer for Hugging Face BERT checkpoints (model_type 'bert') into the `bert` encoder.

Key mapping (HF -> zoo), after dropping a leading ``bert.`` (a *For...* checkpoint):

    embeddings.*                                     -> encoder.embeddings.*
    encoder.layer.N.attention.self.{query,key,value} -> encoder.layer.N.attention.{q,k,v}_proj
    encoder.layer.N.attention.output.dense           -> encoder.layer.N.attention.out_proj
    encoder.layer.N.attention.output.LayerNorm       -> encoder.layer.N.attention_norm
    encoder.layer.N.intermediate.dense               -> encoder.layer.N.intermediate
    encoder.layer.N.output.dense / LayerNorm         -> encoder.layer.N.output / output_norm
    pooler.dense                                     -> head pooler.0   (when the head has a pooler)
    classifier                                       -> head classifier (when the shapes match)
    cls.predictions.transform.dense / LayerNorm      -> mlm head dense / norm  (the decoder is tied)
    cls.predictions.bias                             -> mlm head bias
"""

from __future__ import annotations

import re

from zoo.errors import ZooError
from zoo.hf import Checkpoint, EncoderImport

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


def bert_weights(state: dict) -> dict:
    """The encoder tensors of a BERT-layout state (no model prefix) under their zoo names."""
    return {name: tensor for key, tensor in state.items() if (name := rename(key)) is not None}


def pooler_weights(state: dict, dense: str) -> dict:
    """A pooler-like dense layer (``pooler.dense``, ``classifier.dense``, ...) as the head's ``pooler.0``."""
    return {f"pooler.0.{key.rsplit('.', 1)[1]}": t for key, t in state.items() if key.startswith(f"{dense}.")}


def token_classifier_weights(state: dict) -> dict:
    """A plain linear ``classifier`` (a *ForTokenClassification's, where the family's sequence classifier is
    ``classifier.dense`` + ``classifier.out_proj``) as the head's classifier."""
    return {key: t for key, t in state.items() if key in ("classifier.weight", "classifier.bias")}


MLM_RENAMES = {
    "cls.predictions.transform.dense.": "dense.",
    "cls.predictions.transform.LayerNorm.": "norm.",
    "cls.predictions.bias": "bias",
}


def mlm_weights(state: dict, renames: dict[str, str] = MLM_RENAMES) -> dict:
    """A masked-LM checkpoint's ``cls.predictions`` tensors (or those ``renames`` names: checkpoint prefix ->
    mlm head name) as the mlm head's (its decoder is the tied word-embedding matrix, so the decoder's weight is
    not needed)."""
    out = {}
    for key, tensor in state.items():
        for prefix, name in renames.items():
            if key.startswith(prefix):
                out[name + key[len(prefix) :]] = tensor
    return out


def mlm_options(config: dict) -> dict:
    """How the checkpoint's MLM transform computes (taken where the chosen head has these options)."""
    return {
        "transform_activation": config.get("hidden_act", "gelu"),
        "transform_norm_eps": float(config.get("layer_norm_eps", 1e-12)),
    }


def bert_sizes(config: dict) -> dict:
    """The size options from a BERT-style config.json (hidden_size, num_hidden_layers, ...)."""
    return {
        "vocab_size": config["vocab_size"],
        "d_model": config["hidden_size"],
        "num_layers": config["num_hidden_layers"],
        "num_heads": config["num_attention_heads"],
        "ffn_dim": config["intermediate_size"],
        "max_length": int(config.get("max_position_embeddings", 512)),
        "dropout": config.get("hidden_dropout_prob", 0.1),
    }


def bert_options(checkpoint: Checkpoint) -> dict:
    """The `bert` encoder options of a BERT-style config; refuses relative position embeddings."""
    config = checkpoint.config
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ZooError(
            f"{checkpoint.config_file}: position_embedding_type '{config['position_embedding_type']}' "
            "is not supported (only 'absolute')"
        )
    return {
        "layer_norm_eps": float(config.get("layer_norm_eps", 1e-12)),
        "hidden_act": config.get("hidden_act", "gelu"),
        "type_vocab_size": int(config.get("type_vocab_size", 2)),
    }


def import_bert(checkpoint: Checkpoint) -> EncoderImport:
    state = checkpoint.without_prefix("bert.")
    head = pooler_weights(state, "pooler.dense")
    head.update({key: t for key, t in state.items() if key.startswith("classifier.")})
    head.update(mlm_weights(state))
    sep_id = checkpoint.token_id("[SEP]")
    return EncoderImport(
        encoder="bert",
        sizes=bert_sizes(checkpoint.config),
        encoder_options={
            **bert_options(checkpoint),
            "sep_token_id": sep_id if sep_id is not None else checkpoint.config.get("sep_token_id"),
        },
        weights=bert_weights(state),
        head_weights=head,
        head_options=mlm_options(checkpoint.config),
    )
