"""The `modernbert` encoder back to transformers' ModernBERT (zoo.hf_export.HFEncoder).

The reverse of modernbert_import: q/k/v are stacked into ``Wqkv``. zoo's attention projections and the head's
pooler keep biases, so the config says ``attention_bias`` and ``classifier_bias``; the head's norm bias must
be zero unless the encoder's norms have biases (``norm_bias``), since transformers uses one setting for both.
ModernBertForTokenClassification puts a dense + activation + norm before its classifier: zoo's `token-cls` head
with ``transform=true`` (what an import of one gets).
"""

from __future__ import annotations

import re
from typing import Any

from zoo.hf_export import HFEncoder, refuse

from .bert_export import classifier_check, masked_lm_check

LAYER_MODULES = {"attn.Wo": "attention.out_proj", "mlp.Wi": "mlp.wi", "mlp.Wo": "mlp.wo"}


def rename(key: str) -> str | list[str]:
    """A ModernBertModel tensor name -> the zoo name(s); Wqkv is q, k and v stacked."""
    match = re.match(r"layers\.(\d+)\.(.+)\.(\w+)$", key)
    if not match:
        return f"encoder.{key}"
    layer, module, leaf = match.groups()
    if module == "attn.Wqkv":
        return [f"encoder.layers.{layer}.attention.{p}_proj.{leaf}" for p in "qkv"]
    return f"encoder.layers.{layer}.{LAYER_MODULES.get(module, module)}.{leaf}"


def _special_ids(model: Any) -> dict[str, Any]:
    """The tokenizer's [CLS] and [SEP] ids for the config (its defaults are ModernBERT's own vocabulary's)."""
    vocab = model.tokenizer.get_vocab() if model.tokenizer is not None else {}
    cls, sep = vocab.get("[CLS]", vocab.get("<s>")), vocab.get("[SEP]", vocab.get("</s>"))
    return {"bos_token_id": cls, "cls_token_id": cls, "eos_token_id": sep, "sep_token_id": sep}


def export_modernbert(model: Any) -> HFEncoder:
    import transformers

    spec, encoder = model.spec, model.encoder
    options = spec.encoder.options
    global_attention = encoder.layers[0].attention
    if not (
        getattr(global_attention, "computes_softmax_attention", False)
        and getattr(global_attention, "rotary", None) is not None
        and global_attention.num_kv_heads == global_attention.num_heads
    ):
        refuse(
            [f"attention '{spec.attention.name}' (ModernBERT's global layers are rotary softmax attention)"],
            "ModernBertModel",
        )
    norm_bias = bool(options.get("norm_bias", False))
    config = transformers.ModernBertConfig(
        vocab_size=encoder.embeddings.tok_embeddings.num_embeddings,
        hidden_size=encoder.d_model,
        num_hidden_layers=len(encoder.layers),
        num_attention_heads=global_attention.num_heads,
        intermediate_size=encoder.layers[0].mlp.wo.in_features,
        max_position_embeddings=spec.sizes.get("max_length", 8192),
        hidden_activation=options.get("hidden_act", "gelu"),
        global_attn_every_n_layers=options.get("global_attn_every_n_layers", 3),
        local_attention=options.get("local_attention", 128),
        global_rope_theta=options.get("global_rope_theta", 160000.0),
        local_rope_theta=options.get("local_rope_theta", 10000.0),
        norm_eps=options.get("norm_eps", 1e-5),
        norm_bias=norm_bias,
        mlp_bias=bool(options.get("mlp_bias", False)),
        attention_bias=True,
        classifier_bias=True,
        pad_token_id=int(spec.tokenizer.get("pad_id", 0)),
        **_special_ids(model),
    )

    def check_norm_bias(name: str, architecture: str) -> None:
        if not norm_bias and model.state_dict()[f"head.{name}.bias"].abs().max() > 0:
            refuse(["the head's norm has a bias while the encoder's norms have none"], architecture)

    def classifier(head: Any) -> dict[str, str]:
        architecture = "ModernBertForSequenceClassification"
        classifier_check(head, architecture, None, poolings=("cls", "mean"), norm=True)
        check_norm_bias("pooler.2", architecture)
        config.classifier_pooling = head.options.get("pooling", "cls")
        config.classifier_activation = head.options.get("pooler_activation", "tanh")
        return {"head.dense": "pooler.0", "head.norm": "pooler.2", "classifier": "classifier"}

    def token_classifier(head: Any) -> dict[str, str]:
        architecture = "ModernBertForTokenClassification"
        if not head.options.get("transform"):
            refuse(
                [
                    f"head '{head.name}' without a transform (ModernBERT's token classifier puts dense + "
                    "activation + norm before the linear layer: token-cls transform=true)"
                ],
                architecture,
            )
        check_norm_bias("transform.2", architecture)
        config.classifier_activation = head.options.get("transform_activation", "gelu")
        return {"head.dense": "transform.0", "head.norm": "transform.2", "classifier": "classifier"}

    def masked_lm(head: Any) -> dict[str, str]:
        architecture = "ModernBertForMaskedLM"
        masked_lm_check(head, architecture, head.options.get("transform_activation", "gelu"), config.norm_eps)
        check_norm_bias("norm", architecture)
        config.classifier_activation = head.options.get("transform_activation", "gelu")
        return {"head.dense": "dense", "head.norm": "norm", "decoder.bias": "head.bias"}

    return HFEncoder(config, "ModernBert", rename, classifier, token_classifier, masked_lm)
