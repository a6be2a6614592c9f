"""The `bert` and `deberta` encoders back to transformers: the family's config, the map of its base-model
tensors, and the layout of its *ForSequenceClassification head (zoo.hf_export.HFEncoder).

Every transformers tensor is named by the family importer's own rename table (``rename``: HF name -> zoo
name), so the two directions cannot drift apart. Which family a `bert` encoder is follows from its options,
as the importers set them: ``position_offset`` -> RoBERTa (XLM-RoBERTa or CamemBERT when the model was
imported from one), ``embedding_size`` -> ELECTRA, no token types -> DistilBERT, else BERT. Only what the
family computes maps back: softmax attention over its own biased projections (DeBERTa: the `disentangled`
attention), and, for a sequence classifier, the head's [CLS] pooling with the family's pooler.
"""

from __future__ import annotations

from typing import Any

from zoo.hf_export import HFEncoder, refuse

from . import bert_import, deberta_import, distilbert_import

# model_type -> transformers class-name stem
STEMS = {
    "bert": "Bert",
    "roberta": "Roberta",
    "xlm-roberta": "XLMRoberta",
    "camembert": "Camembert",
    "electra": "Electra",
    "distilbert": "DistilBert",
    "deberta-v2": "DebertaV2",
}
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")


def classifier_check(
    head: Any, architecture: str, activation: str | None, *, poolings=("cls",), norm: bool = False
) -> None:
    """Refuse a head that is not the family's sequence classifier: ``poolings`` it may use, the pooler's
    ``activation`` (None: any, the config says which) and whether a norm follows it (``norm``, ModernBERT's)."""
    options = head.options
    pooling, pooler = options.get("pooling", "cls"), bool(options.get("pooler"))
    if pooling not in poolings or not pooler:
        refuse(
            [
                f"head '{head.name}' with {pooling} pooling and {'a' if pooler else 'no'} pooler (the family's "
                f"classifier is {' or '.join(poolings)} pooling with its pooler)"
            ],
            architecture,
        )
    used = options.get("pooler_activation", "tanh")
    if (activation is not None and used != activation) or bool(options.get("pooler_norm")) != norm:
        wanted = f"dense + {activation or used}{' + norm' if norm else ''}"
        refuse([f"head '{head.name}' with a pooler other than {wanted}"], architecture)


def fixed_classifier(stem: str, modules: dict[str, str], activation: str) -> Any:
    """The classifier layout of a family whose pooler activation is fixed."""

    def classifier(head: Any) -> dict[str, str]:
        classifier_check(head, f"{stem}ForSequenceClassification", activation)
        return modules

    return classifier


def masked_lm_check(head: Any, architecture: str, activation: str, eps: float) -> None:
    """Refuse an mlm head whose transform is not the family's: its activation and LayerNorm epsilon."""
    options = head.options
    used, used_eps = options.get("transform_activation", "gelu"), options.get("transform_norm_eps", 1e-12)
    if used != activation or abs(float(used_eps) - float(eps)) > 1e-15:
        refuse(
            [
                f"head '{head.name}' with transform_activation={used} transform_norm_eps={used_eps} (the "
                f"family's is {activation}, {eps})"
            ],
            architecture,
        )


def bert_masked_lm(
    stem: str, activation: str, eps: float, dense: str, norm: str, biases: tuple[str, ...]
) -> Any:
    """A family's masked-LM head: ``dense`` and ``norm`` modules, ``biases`` the decoder's bias by its names
    (tied: one tensor), the decoder weight tied to the word embeddings."""

    def masked_lm(head: Any) -> dict[str, str]:
        masked_lm_check(head, f"{stem}ForMaskedLM", activation, eps)
        return {dense: "dense", norm: "norm", **dict.fromkeys(biases, "head.bias")}

    return masked_lm


def _common(model: Any) -> dict[str, Any]:
    encoder, layer = model.encoder, model.encoder.layer[0]
    dropout = encoder.embeddings.dropout.p
    return {
        "vocab_size": encoder.embeddings.word_embeddings.num_embeddings,
        "hidden_act": model.spec.encoder.options.get("hidden_act", "gelu"),
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "hidden_size": encoder.d_model,
        "num_hidden_layers": len(encoder.layer),
        "num_attention_heads": layer.attention.num_heads,
        "intermediate_size": layer.intermediate.out_features,
    }


def _family(spec: Any) -> str:
    options = spec.encoder.options
    if options.get("type_vocab_size", 2) == 0:
        return "distilbert"
    if options.get("position_offset", 0):
        source = spec.extra.get("source", {}).get("model_type")
        return source if source in ROBERTA_LIKE else "roberta"
    return "electra" if options.get("embedding_size") else "bert"


def export_bert(model: Any) -> HFEncoder:
    import transformers

    spec, encoder = model.spec, model.encoder
    options = spec.encoder.options
    offset, types = options.get("position_offset", 0), options.get("type_vocab_size", 2)
    family = _family(spec)
    stem = STEMS[family]
    problems = []
    if not all(layer.attention.is_plain_softmax_attention() for layer in encoder.layer):
        problems.append(f"attention '{spec.attention.name}'")
    positions = encoder.embeddings.position_embeddings
    if positions is None:
        problems.append("an encoder without learned positions")
    if options.get("sinusoidal_positions") and family != "distilbert":
        problems.append("sinusoidal positions outside DistilBERT")
    if family == "distilbert" and (offset or options.get("embedding_size")):
        problems.append("no token types together with position_offset or embedding_size")
    refuse(problems, f"{stem}Model")
    common = _common(model)
    rows = positions.num_embeddings
    pad = int(spec.tokenizer.get("pad_id", 0))
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
            seq_classif_dropout=common["hidden_dropout_prob"],
            max_position_embeddings=rows,
            sinusoidal_pos_embds=bool(options.get("sinusoidal_positions")),
            pad_token_id=pad,
        )
        head = {"pre_classifier": "pooler.0", "classifier": "classifier"}
        masked_lm = bert_masked_lm(
            stem,
            common["hidden_act"],
            1e-12,
            "vocab_transform",
            "vocab_layer_norm",
            ("vocab_projector.bias",),
        )
        return HFEncoder(
            config, stem, distilbert_import.rename, fixed_classifier(stem, head, "relu"), masked_lm=masked_lm
        )
    config_cls = getattr(transformers, f"{stem}Config")
    extra = {"embedding_size": options["embedding_size"]} if family == "electra" else {}
    config = config_cls(
        **common,
        **extra,
        max_position_embeddings=rows,
        type_vocab_size=types,
        layer_norm_eps=options.get("layer_norm_eps", 1e-12),
        pad_token_id=offset - 1 if offset else pad,
    )
    eps = config.layer_norm_eps
    masked_lm = None  # ELECTRA's generator head maps hidden_size to embedding_size: no zoo mlm head does
    if family == "bert":
        activation, head = "tanh", {"bert.pooler.dense": "pooler.0", "classifier": "classifier"}
        masked_lm = bert_masked_lm(
            stem,
            common["hidden_act"],
            eps,
            "cls.predictions.transform.dense",
            "cls.predictions.transform.LayerNorm",
            ("cls.predictions.bias", "cls.predictions.decoder.bias"),
        )
    else:
        activation = "gelu" if family == "electra" else "tanh"
        head = {"classifier.dense": "pooler.0", "classifier.out_proj": "classifier"}
    if family in ROBERTA_LIKE:
        masked_lm = bert_masked_lm(
            stem, "gelu", eps, "lm_head.dense", "lm_head.layer_norm", ("lm_head.bias", "lm_head.decoder.bias")
        )

    def rename(key: str) -> str | None:
        if key.startswith("embeddings_project."):
            return f"encoder.{key}"
        return bert_import.rename(key)

    return HFEncoder(config, stem, rename, fixed_classifier(stem, head, activation), masked_lm=masked_lm)


def export_deberta(model: Any) -> HFEncoder:
    import transformers

    spec, encoder = model.spec, model.encoder
    options, attention = spec.encoder.options, spec.attention.options
    if spec.attention.name != "disentangled":
        refuse(
            [f"attention '{spec.attention.name}' (DeBERTa-v2 exports with 'disentangled')"], "DebertaV2Model"
        )
    terms = attention.get("pos_att_type", "c2p|p2c")
    common = _common(model)
    config = transformers.DebertaV2Config(
        **common,
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
        pooler_dropout=common["hidden_dropout_prob"],
        pad_token_id=int(spec.tokenizer.get("pad_id", 0)),
    )
    if encoder.embeddings.position_embeddings is not None:
        config.max_position_embeddings = encoder.embeddings.position_embeddings.num_embeddings

    def classifier(head: Any) -> dict[str, str]:
        classifier_check(head, "DebertaV2ForSequenceClassification", None)
        config.pooler_hidden_act = head.options.get("pooler_activation", "tanh")
        return {"pooler.dense": "pooler.0", "classifier": "classifier"}

    masked_lm = None  # the legacy cls.predictions head; its dense maps hidden_size to embedding_size
    if config.embedding_size == config.hidden_size:
        config.legacy = True
        masked_lm = bert_masked_lm(
            "DebertaV2",
            common["hidden_act"],
            config.layer_norm_eps,
            "cls.predictions.transform.dense",
            "cls.predictions.transform.LayerNorm",
            ("cls.predictions.bias", "cls.predictions.decoder.bias"),
        )
    return HFEncoder(config, "DebertaV2", deberta_import.rename, classifier, masked_lm=masked_lm)
