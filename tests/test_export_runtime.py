"""Serving an export without torch: OnnxModel, zoo predict and zoo evaluate in a process where
``import torch`` fails (sys.modules['torch'] = None), checked against the eager model in this one."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from export_fixtures import CLASSES, sentences, trained_model

from zoo.errors import ZooError
from zoo.export import export_model
from zoo.export.runtime import OnnxModel, physical_cores
from zoo.tokenizer import encode

# Runs the rest of argv as Python with torch and transformers made unimportable.
NO_TORCH = (
    "import sys\n"
    "sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
    "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('torch imported')\n"
)


def _without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH + code, *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, export dir, held-out texts, their gold labels): a trained model exported once."""
    model, _ = trained_model(seed=1)
    out = tmp_path_factory.mktemp("runtime") / "out"
    export_model(model, out)
    texts, labels = sentences(40, seed=4)
    return model, out, texts, labels


def _eager(model, tokenizer, texts):
    ids, mask = encode(tokenizer, texts, max_length=32)
    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


@pytest.mark.slow
def test_onnx_model_serves_without_torch(exported):
    model, out, texts, _ = exported
    code = (
        "import json\nfrom zoo.export.runtime import OnnxModel\n"
        "m = OnnxModel(sys.argv[1]); ids, mask = m.encode(sys.argv[2:])\n"
        "print(json.dumps({'logits': m.logits(ids, mask).tolist(), 'labels': m.labels, 'task': m.task.name,\n"
        "                  'torch': sys.modules['torch'], 'max_length': m.max_length}))\n"
    )
    result = _without_torch(code, str(out), *texts[:8])
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)
    assert (
        served["torch"] is None and served["labels"] == list(CLASSES) and served["task"] == "classification"
    )
    assert served["max_length"] == 32
    np.testing.assert_allclose(
        np.array(served["logits"]), _eager(model, model.tokenizer, texts[:8]), atol=1e-4, rtol=0
    )


@pytest.mark.slow
def test_zoo_predict_and_evaluate_on_an_export_without_torch(exported, tmp_path):
    model, out, texts, labels = exported
    cli = "from zoo.cli import main\nsys.argv = ['zoo', *sys.argv[1:]]\nmain()\n"
    result = _without_torch(cli, "predict", str(out), "--json", *texts[:6])
    assert result.returncode == 0, result.stderr
    predicted = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    eager = [CLASSES[i] for i in _eager(model, model.tokenizer, texts[:6]).argmax(-1)]
    assert predicted == eager

    with open(tmp_path / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], *([t, CLASSES[y]] for t, y in zip(texts, labels))])
    result = _without_torch(cli, "evaluate", str(out), "--data", str(tmp_path / "test.csv"), "--json")
    assert result.returncode == 0, result.stderr
    eager_accuracy = float((_eager(model, model.tokenizer, texts).argmax(-1) == np.array(labels)).mean())
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(eager_accuracy)


def test_onnx_model_reports_bad_paths_in_one_line(exported, tmp_path):
    _, out, _, _ = exported
    with pytest.raises(ZooError, match=r"^\S+/missing: no such export directory or \.onnx file$"):
        OnnxModel(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match=r"^\S+/empty: not an export directory \(no model\.onnx\)$"):
        OnnxModel(tmp_path / "empty")
    served = OnnxModel(out / "model.onnx")  # a file works too, with the manifest beside it
    assert served.labels == list(CLASSES)
    with pytest.raises(ZooError, match=r"^sequence length 40 exceeds the model's 32 positions$"):
        served.logits(np.ones((1, 40), dtype=np.int64), np.ones((1, 40), dtype=np.int64))
    with pytest.raises(ZooError, match=r"must be \(batch, sequence\) arrays of one shape"):
        served.logits(np.ones((1, 4), dtype=np.int64), np.ones((1, 5), dtype=np.int64))


def test_physical_cores_is_a_sane_thread_count():
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
