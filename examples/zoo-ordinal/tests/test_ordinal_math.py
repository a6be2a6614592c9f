"""The loss, the metrics and the predictions against numbers worked out by hand."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from zoo_ordinal.head import OrdinalHead
from zoo_ordinal.task import Ordinal, quadratic_weighted_kappa, rank_probabilities

from zoo import ZooError


def softplus_inverse(y):
    return math.log(math.expm1(y))


def head_with_thresholds(first, *gaps):
    """A head on 2-wide states whose score is the first state component, with thresholds first, first+gap, ..."""
    head = OrdinalHead(d_model=2, num_labels=2 + len(gaps), dropout=0.0).eval()
    with torch.no_grad():
        head.score.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.cutpoints.copy_(torch.tensor([first, *map(softplus_inverse, gaps)]))
    return head


def test_thresholds_start_one_apart_and_centred():
    head = OrdinalHead(d_model=4, num_labels=5, dropout=0.0)
    torch.testing.assert_close(head.thresholds(), torch.tensor([-1.5, -0.5, 0.5, 1.5]))


def test_loss_against_a_hand_computation():
    head = head_with_thresholds(-1.0, 2.0)  # 3 ranks, thresholds θ = (-1, 1)
    torch.testing.assert_close(head.thresholds(), torch.tensor([-1.0, 1.0]))
    # Row A: states (0, 5) and padding (9, 9): mean of real tokens -> score 0. Row B: score 2.
    hidden = torch.tensor([[[0.0, 5.0], [9.0, 9.0]], [[1.0, 0.0], [3.0, 0.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    logits = head(hidden, mask)
    torch.testing.assert_close(logits, torch.tensor([[1.0, -1.0], [3.0, 1.0]]))  # s - θ_k
    # Row A is rank 0 (targets "above 0", "above 1" = 0, 0); row B is rank 2 (1, 1).
    # BCE(x, 0) = log(1 + e^x), BCE(x, 1) = log(1 + e^-x); summed over thresholds, averaged over rows.
    row_a = math.log(1 + math.e) + math.log(1 + math.exp(-1))
    row_b = math.log(1 + math.exp(-3)) + math.log(1 + math.exp(-1))
    expected = (row_a + row_b) / 2
    assert expected == pytest.approx(0.994187, abs=1e-6)
    loss = head.loss(logits, torch.tensor([0, 2]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # The task's numpy loss (what `zoo evaluate` reports) is the same number.
    assert Ordinal().evaluate(list(logits.detach().numpy()), [0, 2], ["a", "b", "c"])[
        "loss"
    ] == pytest.approx(expected, rel=1e-6)
    # A middle rank: rank 1 means "above 0" but not "above 1".
    assert head.loss(logits[:1], torch.tensor([1])).item() == pytest.approx(
        math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-1)), rel=1e-6
    )


def test_mae_qwk_and_accuracy_against_a_hand_computed_example():
    # gold ranks 0 1 2 2, predicted 0 2 2 0 (the number of positive logits).
    outputs = [np.array([-1.0, -2.0]), np.array([2.0, 1.0]), np.array([3.0, 0.5]), np.array([-0.1, -3.0])]
    metrics = Ordinal().evaluate(outputs, [0, 1, 2, 2], ["low", "mid", "high"])
    assert metrics["mae"] == pytest.approx((0 + 1 + 0 + 2) / 4)
    # Confusion O (rows true) = [[1,0,0],[0,0,1],[1,0,1]]; expected E = outer([1,1,2], [2,0,2]) / 4;
    # weights (i-j)²/4. Σ W·O = 1/4 + 1 = 1.25, Σ W·E = 1/2 + 1/8 + 1/8 + 1 = 1.75: κ = 1 - 1.25/1.75 = 2/7.
    assert metrics["qwk"] == pytest.approx(2 / 7)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [1, 0, 1]]


def test_qwk_is_one_when_perfect_below_zero_when_reversed_and_zero_when_undefined():
    gold = np.array([0, 1, 2, 3, 4])
    assert quadratic_weighted_kappa(gold, gold, 5) == pytest.approx(1.0)
    assert quadratic_weighted_kappa(gold, gold[::-1], 5) == pytest.approx(-1.0)
    assert quadratic_weighted_kappa(np.array([2, 2]), np.array([2, 2]), 5) == 0.0


def test_predictions_name_the_rank_and_its_probability():
    table = SimpleNamespace(texts=["meh", "top"])
    # σ(log 3) = 3/4 and σ(-log 3) = 1/4: P(rank) = (1 - 3/4, 3/4 - 1/4, 1/4 - 0) = (1/4, 1/2, 1/4).
    np.testing.assert_allclose(rank_probabilities(np.array([math.log(3), -math.log(3)])), [0.25, 0.5, 0.25])
    outputs = [np.array([math.log(3), -math.log(3)]), np.array([4.0, 2.0])]
    meh, top = Ordinal().predict(table, [None, None], outputs, ["bad", "ok", "good"])
    assert (meh["label"], meh["rank"], meh["probability"]) == ("ok", 1, pytest.approx(0.5))
    assert (top["label"], top["rank"]) == ("good", 2)
    assert top["probability"] == pytest.approx(1 / (1 + math.exp(-2)))  # P(rank > 1) - 0
    assert Ordinal().format_prediction(meh) == "ok\t0.5000\tmeh"


def test_int8_agreement_compares_ranks_not_argmax():
    fp32 = np.array([[2.0, 1.0, -1.0], [1.0, -0.5, -2.0]])  # ranks 2 and 1
    int8 = np.array(
        [[1.0, 2.0, -1.0], [1.0, 0.1, -2.0]]
    )  # ranks 2 and 2 (the argmax moved in row 0, not the rank)
    result = Ordinal().agreement([(fp32, int8, np.ones((2, 4)))])
    assert result == {"agreement": 0.5, "compared": 2, "rule": "predicted rank"}


def table(*labels):
    return SimpleNamespace(source="stars.csv", labels=list(labels), lines=list(range(2, 2 + len(labels))))


def test_label_order_numbers_sort_numerically_and_words_need_the_models_order():
    task = Ordinal()
    assert task.label_names(table(10, "2", 1.0, 2), None) == ["1", "2", "10"]
    assert task.label_names(table("good", "bad", "ok"), ["bad", "ok", "good"]) == ["bad", "ok", "good"]
    with pytest.raises(
        ZooError,
        match=r"^stars.csv: ordinal labels that are not all numbers \(bad, good, ok\) need "
        r"an order; name them lowest first when you build the model, e.g. "
        r"`zoo build --head ordinal --labels bad,ok,good`$",
    ):
        task.label_names(table("good", "bad", "ok"), None)
    with pytest.raises(
        ZooError, match=r"only one rank \(5\) in the data; an ordinal task needs at least two"
    ):
        task.num_labels(table(5, 5), ["5"])
