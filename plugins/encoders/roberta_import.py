"""Importers for RoBERTa and its relatives (model_type 'roberta', 'xlm-roberta', 'camembert') into the `bert`
encoder: the same layer layout as BERT under ``roberta.``, with two differences that are encoder options.

- Positions are numbered from ``pad_token_id + 1`` (row 0 .. pad_token_id of the table are never read for a
  real token): ``position_offset = pad_token_id + 1``, and the table keeps its max_position_embeddings rows
  (514 for 512 tokens).
- One token type (``type_vocab_size`` 1): a text pair is ``<s> A </s></s> B </s>`` in segment 0.

The sequence-classification head (``classifier.dense`` + tanh + ``classifier.out_proj`` on ``<s>``) is
zoo's `cls` head with ``pooling=cls, pooler=True``: ``classifier.dense`` -> ``pooler.0``,
``classifier.out_proj`` -> ``classifier``. The tokenizer (byte-level BPE or SentencePiece) and its pair
template come from tokenizer.json.
"""

from __future__ import annotations

from zoo.hf import Checkpoint, EncoderImport

from .bert_import import (
    bert_options,
    bert_sizes,
    bert_weights,
    mlm_weights,
    pooler_weights,
    token_classifier_weights,
)

LM_HEAD = {"lm_head.dense.": "dense.", "lm_head.layer_norm.": "norm.", "lm_head.bias": "bias"}  # *ForMaskedLM


def import_roberta(checkpoint: Checkpoint) -> EncoderImport:
    config = checkpoint.config
    state = checkpoint.without_prefix("roberta.")
    offset = int(config.get("pad_token_id", 1)) + 1
    sizes = bert_sizes(config)
    sizes["max_length"] -= offset  # the longest text; the table has max_length + offset rows
    head = pooler_weights(state, "pooler.dense")
    head.update(pooler_weights(state, "classifier.dense"))
    head.update(
        {
            f"classifier.{key.rsplit('.', 1)[1]}": t
            for key, t in state.items()
            if key.startswith("classifier.out_proj.")
        }
    )
    head.update(token_classifier_weights(state))
    head.update(mlm_weights(state, LM_HEAD))
    return EncoderImport(
        encoder="bert",
        sizes=sizes,
        encoder_options={**bert_options(checkpoint), "position_offset": offset},
        weights=bert_weights(state),
        head_weights=head,
        head_options={  # RobertaLMHead: dense, gelu, layer_norm
            "transform_activation": "gelu",
            "transform_norm_eps": float(config.get("layer_norm_eps", 1e-12)),
        },
    )
