"""The built-in heads back to transformers (their ``hf_export`` capability): each takes the model and the
encoder's zoo.hf_export.HFEncoder and gives a zoo.hf_export.HFExport.

- `cls`, `multilabel`, `regression`: the family's *ForSequenceClassification, with the ``problem_type`` that
  names the loss (single-label, multi-label, regression);
- `rerank`: the same with one label, and the sigmoid sentence-transformers' CrossEncoder applies to it;
- `token-cls`: the family's *ForTokenClassification;
- `embedding`: the family's base model (AutoModel) and a sentence-transformers layout beside it: Pooling with
  the head's mode, a Dense for its projection, a Normalize when it normalises;
- `mlm`: the family's *ForMaskedLM (transform, decoder tied to the word embeddings, its bias).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import sentence_dir
from zoo.hf_export import HFEncoder, HFExport, refuse

SIGMOID = "torch.nn.modules.activation.Sigmoid"


def _sequence(model: Any, encoder: HFEncoder, kind: str, **settings: Any) -> HFExport:
    modules = encoder.classifier(model.spec.head)  # checks the head and sets the config's head settings
    hf_model = encoder.build(
        "ForSequenceClassification", num_labels=model.head.classifier.out_features, **settings
    )
    return HFExport(encoder.fill(model, hf_model, modules), "AutoModelForSequenceClassification", kind=kind)


def export_classification(model: Any, encoder: HFEncoder) -> HFExport:
    return _sequence(model, encoder, "sequence classification", problem_type="single_label_classification")


def export_multilabel(model: Any, encoder: HFEncoder) -> HFExport:
    return _sequence(model, encoder, "multi-label classification", problem_type="multi_label_classification")


def export_regression(model: Any, encoder: HFEncoder) -> HFExport:
    return _sequence(model, encoder, "regression", problem_type="regression")


def export_rerank(model: Any, encoder: HFEncoder) -> HFExport:
    """One logit; CrossEncoder (sentence-transformers 4+) reads its activation from config.json."""
    return _sequence(
        model, encoder, "reranking (CrossEncoder)", sentence_transformers={"activation_fn": SIGMOID}
    )


def export_token_classification(model: Any, encoder: HFEncoder) -> HFExport:
    modules = encoder.token_classifier(model.spec.head)
    hf_model = encoder.build("ForTokenClassification", num_labels=model.head.classifier.out_features)
    return HFExport(
        encoder.fill(model, hf_model, modules), "AutoModelForTokenClassification", kind="token classification"
    )


def export_mlm(model: Any, encoder: HFEncoder) -> HFExport:
    """The family's *ForMaskedLM: the transform, and the decoder tied to the word embeddings."""
    architecture = f"{encoder.stem}ForMaskedLM"
    name = model.spec.head.name
    if encoder.masked_lm is None:
        refuse([f"head '{name}' (the family's masked-LM head is not the one zoo's computes)"], architecture)
    if not getattr(model.head, "tied", False):
        refuse(
            [f"head '{name}' with a decoder of its own (transformers ties it to the embeddings)"],
            architecture,
        )
    modules = encoder.masked_lm(model.spec.head)  # type: ignore[misc]  # checked above
    hf_model = encoder.build("ForMaskedLM")
    return HFExport(
        encoder.fill(model, hf_model, modules), "AutoModelForMaskedLM", kind="masked language modelling"
    )


def export_embedding(model: Any, encoder: HFEncoder) -> HFExport:
    """The base model, with the head written as sentence-transformers modules (checked against the model
    twice: the hidden states of the loaded AutoModel, and the embeddings of those hidden states through the
    modules as read back from the written files)."""
    head = model.head
    dense = None
    if head.dense is not None:
        activation = model.spec.head.options.get("dense_activation", "tanh")
        dense = {"weight": head.dense.weight, "bias": head.dense.bias, "activation": activation}
    sentence_options = dict(
        dim=int(encoder.config.hidden_size),
        pooling=head.pooling,
        normalize=head.normalize,
        max_seq_length=int(model.spec.tokenizer.get("max_length", 512)),
        dense=dense,
    )
    hf_model = encoder.fill(
        model, encoder.build("Model"), elsewhere={k for k in model.state_dict() if k.startswith("head.")}
    )

    def write(directory: Path) -> None:
        sentence_dir.write(directory, **sentence_options)

    return HFExport(
        hf_model, "AutoModel", write=write, parity=_embedding_parity, kind="embeddings (SentenceTransformer)"
    )


def _embedding_parity(model: Any, loaded: Any, ids: Any, mask: Any, directory: Path) -> dict[str, float]:
    from .embedding import EmbeddingHead

    real = mask.bool()
    hidden = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
    ours = model.encoder(ids, real)
    options = sentence_dir.head_options(directory)
    read_back = EmbeddingHead(d_model=hidden.shape[-1], **options)
    if read_back.dense is not None:
        read_back.load_state_dict(sentence_dir.head_weights(directory), strict=False)
    return {
        "hidden_states": float((hidden - ours)[real].abs().max()),
        "embeddings": float((read_back.eval()(hidden, real) - model(ids, mask)).abs().max()),
    }
