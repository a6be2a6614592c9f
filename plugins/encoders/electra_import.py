"""The importer for ELECTRA discriminators (model_type 'electra') into the `bert` encoder.

ELECTRA is BERT's layout under ``electra.`` with embeddings ``embedding_size`` wide; when that differs
from hidden_size, ``embeddings_project`` maps them up (the encoder's ``embedding_size`` option). Generator
and discriminator-prediction tensors are not part of the encoder and are left out.
ElectraForSequenceClassification (``classifier.dense`` + gelu + ``classifier.out_proj`` on [CLS]) is zoo's
`cls` head with ``pooling=cls, pooler=True, pooler_activation=gelu``.
"""

from __future__ import annotations

from zoo.hf import Checkpoint, EncoderImport

from .bert_import import bert_options, bert_sizes, bert_weights, pooler_weights, token_classifier_weights


def import_electra(checkpoint: Checkpoint) -> EncoderImport:
    config = checkpoint.config
    state = checkpoint.without_prefix("electra.")
    weights = bert_weights(state)
    weights.update({f"encoder.{key}": t for key, t in state.items() if key.startswith("embeddings_project.")})
    embedding_size = int(config.get("embedding_size", config["hidden_size"]))
    head = pooler_weights(state, "classifier.dense")
    head.update(
        {
            f"classifier.{key.rsplit('.', 1)[1]}": t
            for key, t in state.items()
            if key.startswith("classifier.out_proj.")
        }
    )
    head.update(token_classifier_weights(state))
    sep_id = checkpoint.token_id("[SEP]")
    options = {
        **bert_options(checkpoint),
        "sep_token_id": sep_id if sep_id is not None else config.get("sep_token_id"),
    }
    if embedding_size != config["hidden_size"]:
        options["embedding_size"] = embedding_size
    return EncoderImport(
        encoder="bert",
        sizes=bert_sizes(config),
        encoder_options=options,
        weights=weights,
        head_weights=head,
        head_options={"pooler_activation": "gelu"},
    )
