"""The `bert` and `deberta` encoders with a `cls` head, back to transformers' *ForSequenceClassification.

Every transformers tensor is named by the family importer's own rename table (``rename``: HF name -> zoo
name), so the two directions cannot drift apart. Which family a `bert` encoder is follows from its options,
as the importers set them: ``position_offset`` -> RoBERTa, ``embedding_size`` -> ELECTRA, no token types ->
DistilBERT, else BERT. Only what the family computes maps back: softmax attention over its own biased
projections (DeBERTa: the `disentangled` attention), and the head's [CLS] pooling with the family's pooler.
"""

from __future__ import annotations

from typing import Any

from zoo.errors import ZooError

from . import bert_import, deberta_import, distilbert_import


def _refuse_if(problems: list[str], architecture: str) -> None:
    if problems:
        raise ZooError(f"no transformers equivalent for {architecture}: {', '.join(problems)}")


def _head_problems(spec: Any, activation: str, *, poolings=("cls",), norm: bool = False) -> list[str]:
    """What keeps the head from being the family's classifier: ``poolings`` it may use, the pooler's
    ``activation``, and whether a norm follows it (``norm``, ModernBERT's)."""
    options = spec.head.options
    if spec.head.name != "cls" or options.get("pooling", "cls") not in poolings or not options.get("pooler"):
        pooler = "a pooler" if options.get("pooler") else "no pooler"
        return [
            f"head '{spec.head.name}' with {options.get('pooling', 'cls')} pooling and {pooler} (the family's "
            f"classifier is {' or '.join(poolings)} pooling with its pooler)"
        ]
    if options.get("pooler_activation", "tanh") != activation or bool(options.get("pooler_norm")) != norm:
        return [f"a pooler other than dense + {activation}{' + norm' if norm else ''}"]
    return []


def fill(model: Any, hf_model: Any, prefix: str, rename, head: dict[str, str]) -> Any:
    """Copy the zoo tensors into ``hf_model``: base-model keys (under ``prefix``) through ``rename``, head keys
    through ``head`` (HF module -> zoo head module). Every zoo tensor must find a place."""
    ours = model.state_dict()
    state, used = {}, set()
    for key in hf_model.state_dict():
        bare = key.removeprefix(prefix)
        module, _, leaf = key.rpartition(".")
        name = f"head.{head[module]}.{leaf}" if module in head else rename(bare)
        if name is None:
            continue  # a buffer (position_ids)
        if name not in ours:
            raise ZooError(f"the model has no tensor for transformers' '{key}' (looked for '{name}')")
        state[key] = ours[name]
        used.add(name)
    left = sorted(set(ours) - used)
    _refuse_if([f"tensors with no place: {', '.join(left[:3])}"] if left else [], type(hf_model).__name__)
    hf_model.load_state_dict(state, strict=False)
    return hf_model


def _common(model: Any) -> dict[str, Any]:
    encoder, layer = model.encoder, model.encoder.layer[0]
    dropout = encoder.embeddings.dropout.p
    return {
        "vocab_size": encoder.embeddings.word_embeddings.num_embeddings,
        "num_labels": model.head.classifier.out_features,
        "hidden_act": model.spec.encoder.options.get("hidden_act", "gelu"),
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "hidden_size": encoder.d_model,
        "num_hidden_layers": len(encoder.layer),
        "num_attention_heads": layer.attention.num_heads,
        "intermediate_size": layer.intermediate.out_features,
    }


def export_bert(model: Any):
    import transformers

    spec, encoder = model.spec, model.encoder
    options = spec.encoder.options
    offset, types = options.get("position_offset", 0), options.get("type_vocab_size", 2)
    family = "roberta" if offset else "electra" if options.get("embedding_size") else "bert"
    family = "distilbert" if types == 0 else family
    architecture = {
        "bert": "BertForSequenceClassification",
        "roberta": "RobertaForSequenceClassification",
        "electra": "ElectraForSequenceClassification",
        "distilbert": "DistilBertForSequenceClassification",
    }[family]
    activation = {"bert": "tanh", "roberta": "tanh", "electra": "gelu", "distilbert": "relu"}[family]
    problems = _head_problems(spec, activation)
    if not all(layer.attention.is_plain_softmax_attention() for layer in encoder.layer):
        problems.append(f"attention '{spec.attention.name}'")
    positions = encoder.embeddings.position_embeddings
    if positions is None:
        problems.append("an encoder without learned positions")
    if options.get("sinusoidal_positions") and family != "distilbert":
        problems.append("sinusoidal positions outside DistilBERT")
    if family == "distilbert" and (offset or options.get("embedding_size")):
        problems.append("no token types together with position_offset or embedding_size")
    _refuse_if(problems, architecture)
    common = _common(model)
    rows = positions.num_embeddings
    eps = options.get("layer_norm_eps", 1e-12)
    pad = int(spec.tokenizer.get("pad_id", 0))
    cls = getattr(transformers, architecture)
    if family == "distilbert":
        config = transformers.DistilBertConfig(
            vocab_size=common["vocab_size"],
            dim=common["hidden_size"],
            n_layers=common["num_hidden_layers"],
            n_heads=common["num_attention_heads"],
            hidden_dim=common["intermediate_size"],
            activation=common["hidden_act"],
            dropout=common["hidden_dropout_prob"],
            attention_dropout=common["hidden_dropout_prob"],
            max_position_embeddings=rows,
            sinusoidal_pos_embds=bool(options.get("sinusoidal_positions")),
            num_labels=common["num_labels"],
            pad_token_id=pad,
        )
        head = {"pre_classifier": "pooler.0", "classifier": "classifier"}
        return fill(model, cls(config), "distilbert.", distilbert_import.rename, head)
    config_cls = getattr(transformers, architecture.replace("ForSequenceClassification", "Config"))
    extra = {"embedding_size": options["embedding_size"]} if family == "electra" else {}
    config = config_cls(
        **common,
        **extra,
        max_position_embeddings=rows,
        type_vocab_size=types,
        layer_norm_eps=eps,
        pad_token_id=offset - 1 if family == "roberta" else pad,
    )
    if family == "bert":
        head = {"bert.pooler.dense": "pooler.0", "classifier": "classifier"}
    else:
        head = {"classifier.dense": "pooler.0", "classifier.out_proj": "classifier"}
    hf_model = cls(config)
    prefix = f"{family}."

    def rename(key: str) -> str | None:
        if key.startswith("embeddings_project."):
            return f"encoder.{key}"
        return bert_import.rename(key)

    return fill(model, hf_model, prefix, rename, head)


def export_deberta(model: Any):
    import transformers

    spec, encoder = model.spec, model.encoder
    options, attention = spec.encoder.options, spec.attention.options
    problems = _head_problems(spec, spec.head.options.get("pooler_activation", "gelu"))
    if spec.attention.name != "disentangled":
        problems.append(f"attention '{spec.attention.name}' (DeBERTa-v2 exports with 'disentangled')")
    _refuse_if(problems, "DebertaV2ForSequenceClassification")
    terms = attention.get("pos_att_type", "c2p|p2c")
    config = transformers.DebertaV2Config(
        **_common(model),
        max_position_embeddings=spec.sizes.get("max_length", 512),
        type_vocab_size=options.get("type_vocab_size", 0),
        layer_norm_eps=options.get("layer_norm_eps", 1e-7),
        position_biased_input=bool(options.get("position_biased_input")),
        embedding_size=options.get("embedding_size") or encoder.d_model,
        relative_attention=True,
        position_buckets=attention.get("position_buckets", 256),
        max_relative_positions=attention.get("max_relative_positions", 512),
        pos_att_type=[t for t in terms.split("|") if t],
        share_att_key=bool(attention.get("share_att_key", True)),
        norm_rel_ebd="layer_norm" if attention.get("norm_rel_ebd", True) else "none",
        pooler_hidden_act=spec.head.options.get("pooler_activation", "gelu"),
        pooler_dropout=encoder.embeddings.dropout.p,
        pad_token_id=int(spec.tokenizer.get("pad_id", 0)),
    )
    if encoder.embeddings.position_embeddings is not None:
        config.max_position_embeddings = encoder.embeddings.position_embeddings.num_embeddings
    head = {"pooler.dense": "pooler.0", "classifier": "classifier"}
    hf_model = transformers.DebertaV2ForSequenceClassification(config)
    return fill(model, hf_model, "deberta.", deberta_import.rename, head)
