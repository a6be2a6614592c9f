"""The importer for DeBERTa-v2 and v3 checkpoints (model_type 'deberta-v2') into the `deberta` encoder with the
`disentangled` attention. Key mapping (HF -> zoo), after dropping a leading ``deberta.``:

    embeddings.*                                       -> encoder.embeddings.*
    encoder.rel_embeddings / encoder.LayerNorm         -> encoder.relative.embeddings / encoder.relative.norm
    encoder.layer.N.attention.self.{query,key,value}_proj -> encoder.layer.N.attention.{q,k,v}_proj
    encoder.layer.N.attention.self.pos_{key,query}_proj   -> encoder.layer.N.attention.pos_{key,query}_proj
    encoder.layer.N.attention.output.dense / LayerNorm -> encoder.layer.N.attention.out_proj / attention_norm
    encoder.layer.N.intermediate.dense                 -> encoder.layer.N.intermediate
    encoder.layer.N.output.dense / LayerNorm           -> encoder.layer.N.output / output_norm
    pooler.dense, classifier                           -> head pooler.0 (pooler_hidden_act), classifier

The relative-position settings (``position_buckets``, ``max_relative_positions``, ``pos_att_type``,
``share_att_key``, ``norm_rel_ebd``) become the attention's options.
"""

from __future__ import annotations

import re

from zoo.errors import ZooError
from zoo.hf import Checkpoint, EncoderImport

from .bert_import import bert_sizes, mlm_options, mlm_weights, pooler_weights

LAYER_RENAMES = {
    "attention.self.query_proj": "attention.q_proj",
    "attention.self.key_proj": "attention.k_proj",
    "attention.self.value_proj": "attention.v_proj",
    "attention.self.pos_key_proj": "attention.pos_key_proj",
    "attention.self.pos_query_proj": "attention.pos_query_proj",
    "attention.output.dense": "attention.out_proj",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}
ENCODER_RENAMES = {"encoder.rel_embeddings": "relative.embeddings", "encoder.LayerNorm": "relative.norm"}


def rename(key: str) -> str | None:
    if key.startswith("embeddings.") and key != "embeddings.position_ids":
        return f"encoder.{key}"
    owner, _, leaf = key.rpartition(".")
    if owner in ENCODER_RENAMES:
        return f"encoder.{ENCODER_RENAMES[owner]}.{leaf}"
    match = re.match(r"encoder\.layer\.(\d+)\.(.+)$", owner)
    if match and match.group(2) in LAYER_RENAMES:
        return f"encoder.layer.{match.group(1)}.{LAYER_RENAMES[match.group(2)]}.{leaf}"
    return None


def _terms(value) -> str:
    if value is None:
        return ""
    return "|".join(value) if isinstance(value, (list, tuple)) else str(value)


def import_deberta_v2(checkpoint: Checkpoint) -> EncoderImport:
    config = checkpoint.config
    where = checkpoint.config_file
    if int(config.get("conv_kernel_size", 0) or 0) > 0:
        raise ZooError(f"{where}: conv_kernel_size > 0 (DeBERTa-v2's convolution layer) is not supported")
    pooler_size = config.get("pooler_hidden_size", config["hidden_size"])
    if pooler_size != config["hidden_size"]:
        raise ZooError(f"{where}: pooler_hidden_size {pooler_size} != hidden_size is not supported")
    state = checkpoint.without_prefix("deberta.")
    sizes = bert_sizes(config)
    eps = float(config.get("layer_norm_eps", 1e-7))
    sep_id = checkpoint.token_id("[SEP]")
    encoder_options = {
        "layer_norm_eps": eps,
        "hidden_act": config.get("hidden_act", "gelu"),
        "type_vocab_size": int(config.get("type_vocab_size", 0)),
        "position_biased_input": bool(config.get("position_biased_input", True)),
        "sep_token_id": sep_id if sep_id is not None else config.get("sep_token_id"),
    }
    if int(config.get("embedding_size") or config["hidden_size"]) != config["hidden_size"]:
        encoder_options["embedding_size"] = int(config["embedding_size"])
    attention, attention_options = None, {}
    if config.get("relative_attention", False):
        max_relative = int(config.get("max_relative_positions", -1))
        norm = [x.strip() for x in str(config.get("norm_rel_ebd", "none")).lower().split("|")]
        attention = "disentangled"
        attention_options = {
            "position_buckets": int(config.get("position_buckets", -1)),
            "max_relative_positions": max_relative if max_relative > 0 else sizes["max_length"],
            "pos_att_type": _terms(config.get("pos_att_type")),
            "share_att_key": bool(config.get("share_att_key", False)),
            "norm_rel_ebd": "layer_norm" in norm,
            "layer_norm_eps": eps,
        }
    head = pooler_weights(state, "pooler.dense")
    head.update({key: t for key, t in state.items() if key.startswith("classifier.")})
    head.update(mlm_weights(state))  # the legacy cls.predictions head of DebertaV2ForMaskedLM
    return EncoderImport(
        encoder="deberta",
        sizes=sizes,
        encoder_options=encoder_options,
        attention=attention,
        attention_options=attention_options,
        weights={name: t for key, t in state.items() if (name := rename(key)) is not None},
        head_weights=head,
        head_options={"pooler_activation": config.get("pooler_hidden_act", "gelu"), **mlm_options(config)},
    )
