"""The `modernbert` encoder with a `cls` head, back to transformers' ModernBertForSequenceClassification.

The reverse of modernbert_import: q/k/v are stacked into ``Wqkv``. zoo's attention projections and the head's
pooler keep biases, so the config says ``attention_bias`` and ``classifier_bias``; the head's norm bias must
be zero unless the encoder's norms have biases (``norm_bias``), since transformers uses one setting for both.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from zoo.errors import ZooError

from .bert_export import _head_problems, _refuse_if


def export_modernbert(model: Any):
    import transformers

    spec, encoder = model.spec, model.encoder
    options = spec.encoder.options
    head_options = spec.head.options
    activation = head_options.get("pooler_activation", "gelu")
    problems = _head_problems(spec, activation, poolings=("cls", "mean"), norm=True)
    global_attention = encoder.layers[0].attention
    if not (
        getattr(global_attention, "computes_softmax_attention", False)
        and getattr(global_attention, "rotary", None) is not None
        and global_attention.num_kv_heads == global_attention.num_heads
    ):
        problems.append(
            f"attention '{spec.attention.name}' (ModernBERT's global layers are rotary softmax attention)"
        )
    _refuse_if(problems, "ModernBertForSequenceClassification")
    ours = model.state_dict()
    norm_bias = bool(options.get("norm_bias", False))
    if not norm_bias and ours["head.pooler.2.bias"].abs().max() > 0:
        raise ZooError(
            "no transformers equivalent: the head's norm has a bias while the encoder's norms have none"
        )
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
        classifier_pooling=head_options.get("pooling", "cls"),
        classifier_activation=head_options.get("pooler_activation", "gelu"),
        num_labels=model.head.classifier.out_features,
        pad_token_id=int(spec.tokenizer.get("pad_id", 0)),
    )
    hf_model = transformers.ModernBertForSequenceClassification(config)
    state, used = {}, set()
    for key in hf_model.state_dict():
        module, _, leaf = key.rpartition(".")
        match = re.match(r"model\.layers\.(\d+)\.(.+)$", module)
        if module.startswith("model.") and not match:
            names = [f"encoder.{key.removeprefix('model.')}"]
        elif match and match.group(2) == "attn.Wqkv":
            names = [f"encoder.layers.{match.group(1)}.attention.{p}_proj.{leaf}" for p in "qkv"]
        elif match:
            rest = {"attn.Wo": "attention.out_proj", "mlp.Wi": "mlp.wi", "mlp.Wo": "mlp.wo"}.get(
                match.group(2)
            )
            names = [f"encoder.layers.{match.group(1)}.{rest or match.group(2)}.{leaf}"]
        else:
            head = {"head.dense": "pooler.0", "head.norm": "pooler.2", "classifier": "classifier"}
            names = [f"head.{head.get(module, module)}.{leaf}"]
        missing = [n for n in names if n not in ours]
        if missing:
            raise ZooError(f"the model has no tensor for transformers' '{key}' (looked for '{missing[0]}')")
        state[key] = torch.cat([ours[n] for n in names]) if len(names) > 1 else ours[names[0]]
        used.update(names)
    left = sorted(n for n in set(ours) - used if n != "head.pooler.2.bias")
    _refuse_if(
        [f"tensors with no place: {', '.join(left[:3])}"] if left else [],
        "ModernBertForSequenceClassification",
    )
    hf_model.load_state_dict(state, strict=False)
    return hf_model
