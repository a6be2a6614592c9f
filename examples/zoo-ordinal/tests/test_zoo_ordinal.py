"""zoo-ordinal's tests: zoo's conformance kit on the task and the head, and a torch-free start-up."""

import subprocess
import sys

import pytest
import torch

import zoo
from zoo import testing
from zoo.manager import plugin_infos

TASK = HEAD = (
    "zoo-ordinal:ordinal"  # 'plugin:name' stays unambiguous even if another plugin has an 'ordinal' too
)


def test_the_plugin_is_installed_and_registers_its_parts():
    info = {i.name: i for i in plugin_infos()}["zoo-ordinal"]
    assert info.errors == []
    assert info.parts == {"task": ["ordinal"], "head": ["ordinal"]}
    assert (info.distribution, info.version) == ("zoo-ordinal", "0.1.0")


def test_the_task_passes_the_conformance_kit():
    # every head that serves the task (here: ordinal) on the default encoder: shapes (B, K-1), backward with
    # the head's loss on synthetic ranks, padding, determinism, the task's metrics, save/load, ONNX and TorchScript.
    assert testing.check_part("task", TASK) == [
        "task 'ordinal' with encoder 'transformer' and attention 'sdpa' and head 'ordinal'"
    ]


def test_the_head_passes_the_conformance_kit_with_cls_pooling_on_prenorm():
    testing.check_part("head", HEAD, options={"pooling": "cls"}, partners=["prenorm"])


@pytest.mark.parametrize("ranks", [2, 5])
def test_k_ranks_give_k_minus_1_ordered_thresholds(ranks):
    model = zoo.build_model(
        "transformer", HEAD, vocab_size=50, d_model=16, num_layers=1, num_heads=2, num_labels=ranks, seed=0
    )
    assert model.spec.task.ref == "zoo-ordinal:ordinal"
    with torch.no_grad():
        logits = model(torch.randint(1, 50, (3, 7)), torch.ones(3, 7, dtype=torch.long))
        thresholds = model.head.thresholds()
    assert logits.shape == (3, ranks - 1)
    assert torch.all(thresholds[1:] - thresholds[:-1] > 0)
    assert torch.all(logits[:, 1:] <= logits[:, :-1])  # P(rank > k) falls with k: predictions are consistent


def test_bad_head_options_are_one_line_errors():
    with pytest.raises(zoo.ZooError, match="the ordinal head needs at least 2 ranks, got num_labels=1"):
        zoo.build_model(
            "transformer", HEAD, num_labels=1, vocab_size=50, d_model=16, num_layers=1, num_heads=2
        )
    with pytest.raises(zoo.ZooError, match=r"unknown pooling 'max' \(choices: cls, mean\)"):
        zoo.build_model(
            "transformer",
            HEAD,
            head_options={"pooling": "max"},
            vocab_size=50,
            d_model=16,
            num_layers=1,
            num_heads=2,
        )


def test_the_plugin_and_task_modules_import_no_torch():
    """`zoo parts` imports zoo_ordinal/__init__.py, and an ONNX export is served with zoo_ordinal.task: torch-free."""
    code = "import sys, zoo_ordinal, zoo_ordinal.task, zoo_ordinal.stars; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
