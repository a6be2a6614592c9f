"""Attention pooling against numbers worked out by hand."""

import math

import torch
import torch.nn.functional as F
from zoo_attnpool_head.head import AttentionPoolingHead


def hand_set_head():
    """d_model 2, 2 labels; score_t = h_t[0]; the classifier is the identity, no bias, no dropout."""
    head = AttentionPoolingHead(d_model=2, num_labels=2, dropout=0.0).eval()
    with torch.no_grad():
        head.score.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.classifier.weight.copy_(torch.eye(2))
        head.classifier.bias.zero_()
    return head


def test_a_hand_checked_row_and_its_loss():
    # Two real tokens, h_1 = (0, 1) and h_2 = (ln 3, 0), and one padded token with a huge score.
    # Scores 0 and ln 3 -> weights 1/4 and 3/4 -> pooled = (3/4·ln 3, 1/4) = (0.823959, 0.25).
    head = hand_set_head()
    hidden = torch.tensor([[[0.0, 1.0], [math.log(3), 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    with torch.no_grad():
        weights = head.weights(hidden, mask)
        logits = head(hidden, mask)
    torch.testing.assert_close(weights, torch.tensor([[0.25, 0.75, 0.0]]))
    assert weights[0, 2].item() == 0.0  # padding gets exactly no weight
    torch.testing.assert_close(logits, torch.tensor([[0.75 * math.log(3), 0.25]]))
    assert abs(logits[0, 0].item() - 0.823959) < 1e-6
    # Cross-entropy for label 0: log(1 + e^(0.25 - 0.823959)) = 0.446793
    loss = head.loss(logits, torch.tensor([0]), mask)
    assert loss.dim() == 0 and abs(loss.item() - 0.446793) < 1e-6


def test_the_loss_is_plain_cross_entropy_like_cls():
    head = hand_set_head()
    logits, labels = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(head.loss(logits, labels, None), F.cross_entropy(logits, labels))
    torch.testing.assert_close(
        head.loss(logits.bfloat16(), labels, None), F.cross_entropy(logits.bfloat16().float(), labels)
    )


def test_no_mask_means_every_token_is_real():
    head = hand_set_head()
    hidden = torch.randn(2, 4, 2)
    with torch.no_grad():
        torch.testing.assert_close(head(hidden, None), head(hidden, torch.ones(2, 4, dtype=torch.bool)))


def test_bfloat16_hidden_states_under_autocast_are_pooled_in_float32():
    head = hand_set_head()
    hidden = torch.randn(2, 4, 2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        weights = head.weights(hidden.bfloat16(), None)
        logits = head(hidden.bfloat16(), None)
    assert (
        weights.dtype == torch.float32 and logits.dtype == torch.bfloat16
    )  # autocast runs the classifier in bf16
    torch.testing.assert_close(logits.float(), head(hidden.bfloat16().float(), None), atol=2e-2, rtol=2e-2)
