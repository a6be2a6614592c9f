"""int8: a model trained in the test keeps >= 99% of its predictions after dynamic quantisation."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from export_fixtures import sentences, trained_model
from zoo.cli import cli
from zoo.export.quantize import agreement
from zoo.tokenizer import encode


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_a_trained_model(tmp_path):
    model, accuracy = trained_model()
    assert accuracy >= 0.95  # it learnt the task, so agreement measures something
    model.save(tmp_path / "model")
    held_out, _ = sentences(300, seed=3)
    with open(tmp_path / "held_out.csv", "w", newline="") as f:
        csv.writer(f).writerows([["text"], *([t] for t in held_out)])
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "model"), "--onnx", "--quantize", "int8",
                                      "--calibration-data", str(tmp_path / "held_out.csv"),
                                      "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    int8 = json.loads(result.stdout)["int8"]
    assert int8["compared"] == 300 and int8["rule"] == "argmax"
    assert int8["agreement"] >= 0.99 and int8["passed"]
    assert int8["bytes"] < int8["fp32_bytes"]

    # Independently: the served int8 graph against the eager torch model on the same texts.
    from zoo.export.runtime import OnnxModel

    served = OnnxModel(tmp_path / "out")
    assert served.path.name == "model.int8.onnx"
    ids, mask = encode(served.tokenizer, held_out, max_length=served.max_length)
    with torch.no_grad():
        eager = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy().argmax(-1)
    assert (served.logits(ids, mask).argmax(-1) == eager).mean() >= 0.99
    fp32 = OnnxModel(tmp_path / "out", file="model.onnx")
    np.testing.assert_allclose(fp32.logits(ids, mask), model(torch.from_numpy(ids), torch.from_numpy(mask))
                               .detach().numpy(), atol=1e-4, rtol=0)


def _fixed(outputs):
    """A runner that returns the given logits batch by batch."""
    queue = list(outputs)
    return lambda ids, mask: queue.pop(0)


def test_agreement_rules_per_task():
    from zoo.tasks import load_task

    mask = np.array([[1, 1, 0]])
    batches = [(np.zeros((1, 3), dtype=np.int64), mask)]
    a = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # token logits (1, 3, 2)
    b = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # differs at a real token and at padding
    token = agreement(_fixed([a]), _fixed([b]), batches, load_task("token-classification"))
    assert (token["agreement"], token["compared"]) == (0.5, 2)  # padding is not a prediction

    two = [(np.zeros((2, 3), dtype=np.int64), np.ones((2, 3), dtype=np.int64))]
    assert agreement(_fixed([np.array([[2.0, 1.0], [0.0, 1.0]])]), _fixed([np.array([[2.0, 3.0], [0.0, 1.0]])]),
                     two, load_task("classification"))["agreement"] == 0.5
    multi = agreement(_fixed([np.array([[1.0, -1.0], [1.0, 1.0]])]), _fixed([np.array([[1.0, 1.0], [1.0, 1.0]])]),
                      two, load_task("multilabel"))
    assert (multi["agreement"], multi["compared"]) == (0.75, 4)
    # float: within 5% of the fp32 spread (here 10 -> 0.5)
    regression = agreement(_fixed([np.array([[0.0], [10.0]])]), _fixed([np.array([[0.4], [11.0]])]), two, load_task("regression"))
    assert regression["agreement"] == 0.5
