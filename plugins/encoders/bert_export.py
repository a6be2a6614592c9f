"""The `bert` encoder with a `cls` head, back to transformers' BertForSequenceClassification.

Every transformers tensor is named by the importer's own rename table (bert_import.rename), so the two
directions cannot drift apart; the pooler is the head's ``pooler.0`` and the classifier its ``classifier``.
Only what BERT computes maps back: softmax attention over its own biased projections, learned positions
from 0, two token types, the head's [CLS] pooling with the tanh pooler.
"""

from __future__ import annotations

from typing import Any

from zoo.errors import ZooError

from .bert_import import rename


def export_bert(model: Any):
    import transformers

    spec, encoder, head = model.spec, model.encoder, model.head
    options = spec.encoder.options
    problems = []
    if not all(layer.attention.is_plain_softmax_attention() for layer in encoder.layer):
        problems.append(f"attention '{spec.attention.name}'")
    if (
        options.get("position_offset", 0)
        or options.get("sinusoidal_positions")
        or options.get("embedding_size")
    ):
        problems.append("encoder options position_offset / sinusoidal_positions / embedding_size")
    if encoder.embeddings.position_embeddings is None or options.get("type_vocab_size", 2) < 1:
        problems.append("an encoder without learned positions or token types")
    head_options = spec.head.options
    if (
        spec.head.name != "cls"
        or head_options.get("pooling", "cls") != "cls"
        or not head_options.get("pooler")
    ):
        problems.append(f"head '{spec.head.name}' other than cls pooling with its pooler")
    elif head_options.get("pooler_activation", "tanh") != "tanh" or head_options.get("pooler_norm"):
        problems.append("a pooler other than dense + tanh")
    if problems:
        raise ZooError(f"no transformers equivalent for BertForSequenceClassification: {', '.join(problems)}")
    layer = encoder.layer[0]
    config = transformers.BertConfig(
        vocab_size=encoder.embeddings.word_embeddings.num_embeddings,
        hidden_size=encoder.d_model,
        num_hidden_layers=len(encoder.layer),
        num_attention_heads=layer.attention.num_heads,
        intermediate_size=layer.intermediate.out_features,
        hidden_act=options.get("hidden_act", "gelu"),
        max_position_embeddings=encoder.embeddings.position_embeddings.num_embeddings,
        type_vocab_size=options.get("type_vocab_size", 2),
        layer_norm_eps=options.get("layer_norm_eps", 1e-12),
        hidden_dropout_prob=encoder.embeddings.dropout.p,
        attention_probs_dropout_prob=encoder.embeddings.dropout.p,
        num_labels=head.classifier.out_features,
        pad_token_id=int(spec.tokenizer.get("pad_id", 0)),
    )
    hf_model = transformers.BertForSequenceClassification(config)
    ours = model.state_dict()
    state, used = {}, set()
    for key in hf_model.state_dict():
        bare = key.removeprefix("bert.")
        if bare.startswith("pooler.dense."):
            name = f"head.pooler.0.{bare.rsplit('.', 1)[1]}"
        elif bare.startswith("classifier."):
            name = f"head.{bare}"
        else:
            name = rename(bare)
        if name is None:
            continue  # a buffer (position_ids)
        if name not in ours:
            raise ZooError(f"the model has no tensor for transformers' '{key}' (looked for '{name}')")
        state[key], used = ours[name], used | {name}
    left = sorted(set(ours) - used)
    if left:
        raise ZooError(f"tensors with no place in BertForSequenceClassification: {', '.join(left[:3])}")
    hf_model.load_state_dict(state, strict=False)
    return hf_model
