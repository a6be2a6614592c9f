"""Directories written before tasks were a kind of part (config.json format 1, export manifests whose task
is a first-wave label format) still load and give the same outputs. tests/data/format1 was written by
zoo at commit 8459300: a tiny multi-label model (`zoo.build_model(..., "multilabel", ...).save`) and its
ONNX export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

import zoo
from zoo.export.runtime import OnnxModel
from zoo.tokenizer import encode

DATA = Path(__file__).resolve().parent / "data" / "format1"
TEXTS = ["the match was won", "new phone released today", "markets"]


def test_the_old_files_are_what_the_first_wave_wrote():
    config = json.loads((DATA / "model" / "config.json").read_text())
    assert config["format_version"] == 1 and "task" not in config["parts"]
    assert json.loads((DATA / "export" / "manifest.json").read_text())["task"] == "multi"


def test_a_format_1_model_loads_with_the_task_its_head_serves_and_saves_as_format_2(tmp_path):
    model = zoo.load_model(DATA / "model")
    assert model.task.name == "multilabel" and model.spec.task.ref == "zoo.tasks:multilabel"
    ids, mask = encode(model.tokenizer, TEXTS, max_length=16)
    with torch.no_grad():
        before = model(torch.from_numpy(ids), torch.from_numpy(mask))
    shutil.copytree(DATA / "model", tmp_path / "old")
    model.save(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "config.json").read_text())
    assert saved["format_version"] == 2 and saved["parts"]["task"]["name"] == "multilabel"
    with torch.no_grad():
        after = zoo.load_model(tmp_path / "new")(torch.from_numpy(ids), torch.from_numpy(mask))
    assert torch.equal(before, after)


def test_a_first_wave_export_serves_with_its_task():
    onnx = OnnxModel(DATA / "export")
    assert onnx.task.name == "multilabel"
    model = zoo.load_model(DATA / "model")
    ids, mask = onnx.encode(TEXTS)
    with torch.no_grad():
        eager = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.abs(onnx.logits(ids, mask) - eager).max() <= 1e-4
    from zoo.data import Table
    from zoo.inference import predict_table

    rows = predict_table(onnx, Table("t", TEXTS, None, None, [1, 2, 3]))
    assert all(set(r) == {"text", "labels", "probabilities"} for r in rows)
