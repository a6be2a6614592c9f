"""The core acceptance matrix (issue 2), run through the conformance kit so there is one implementation.

Every attention x every encoder x the cls head, and every head on the default encoder with its own loss:
forward, backward (every parameter gets a finite gradient), padding invariance (<= 1e-5 at real tokens),
save -> load_model exact, same seed -> same weights. The parametrisation reads the live registry, so a
part registered by any installed plugin joins the matrix automatically. Export parity for the same
combinations lives in tests/test_export*.py.
"""

from __future__ import annotations

import pytest

from zoo import testing

# name -> why it is skipped (timm style: exclusions are listed by name with the reason). None today.
EXCLUDED_ATTENTION: dict[str, str] = {}


@pytest.mark.parametrize("encoder", testing.parts("encoder"))
@pytest.mark.parametrize("attention", testing.parts("attention", exclude=EXCLUDED_ATTENTION))
def test_attention_with_encoder(attention, encoder):
    ran = testing.check_model(
        encoder=encoder, attention=attention, head="cls", focus="attention", export=False
    )
    assert ran == [
        "attention-contract",
        "shapes",
        "mask-and-loss",
        "backward",
        "padding",
        "determinism",
        "task",
        "save-load",
    ]


@pytest.mark.parametrize("head", testing.parts("head"))
def test_head_on_default_encoder(head):
    ran = testing.check_part("head", head, export=False)
    assert ran == [f"head '{head}' with encoder 'transformer' and attention 'sdpa'"]


# Options that change what a part computes get their own rows: a window smaller than the batch's
# sequences, multi-query and a real grouping, mean pooling that must skip padding.
@pytest.mark.parametrize(
    "kind, name, options",
    [
        ("attention", "local", {"window": 1}),
        ("attention", "gqa", {"num_kv_heads": 2}),
        ("attention", "mqa", {"num_kv_heads": 1}),
        ("head", "cls", {"pooling": "mean", "pooler": True}),
        ("head", "regression", {"pooling": "cls"}),
        ("head", "cls", {"pooler": True, "pooler_activation": "gelu"}),
        ("head", "cls", {"pooler": True, "pooler_norm": True, "pooling": "mean"}),  # ModernBERT's head
        # the bert options the imported families use: RoBERTa/ELECTRA-like, then DistilBERT-like
        ("encoder", "bert", {"position_offset": 2, "type_vocab_size": 1, "embedding_size": 16}),
        ("encoder", "bert", {"type_vocab_size": 0, "sinusoidal_positions": True}),
        # windowed layers narrower than the batch, a global one between; DeBERTa-v2-like absolute positions
        ("encoder", "modernbert", {"global_attn_every_n_layers": 2, "local_attention": 2}),
        ("encoder", "deberta", {"position_biased_input": True, "type_vocab_size": 2, "sep_token_id": 3}),
        ("attention", "disentangled", {"position_buckets": 4, "max_relative_positions": 16}),
        ("attention", "disentangled", {"pos_att_type": "c2p", "share_att_key": False, "norm_rel_ebd": False}),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()),
)
def test_part_options(kind, name, options):
    testing.check_part(kind, name, options=options, export=False)


def test_matrix_covers_every_registered_part():
    from zoo import list_parts

    registered = list_parts()
    assert sorted(p.values[0] for p in testing.parts("attention")) == registered["attention"]
    assert sorted(p.values[0] for p in testing.parts("encoder")) == registered["encoder"]
    assert {"mha", "sdpa", "gqa", "linear", "local", "alibi"} <= set(registered["attention"])
