"""Hostile files: a pickle that would run code, placed everywhere zoo reads a file, is never executed;
truncated or corrupt safetensors in each place are one clean error naming the file; a damaged training
checkpoint, export manifest or HF shard index cannot crash zoo, import a module or point it outside its
directory; path-like label names never write outside the output directory."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_training import synthetic, write_jsonl

import zoo
from zoo.errors import ZooError
from zoo.training import TrainConfig, finetune
from zoo.training.state import STATE_NAME

CONFIG = TrainConfig(epochs=1, batch_size=16, lr=3e-3, patience=None, num_threads=1)


class Exploit:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def never_unpickle(monkeypatch, tmp_path):
    """The marker the exploit would create; any unpickling entry point fails the test outright."""

    def refuse(*args, **kwargs):
        pytest.fail("something tried to unpickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    return tmp_path / "pwned"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 1-epoch run (model dir + trainer state), and its training data."""
    d = tmp_path_factory.mktemp("run")
    write_jsonl(d / "train.jsonl", synthetic("cls", 32, 1))
    model = zoo.build_model(
        "transformer",
        "cls",
        d_model=16,
        num_layers=1,
        num_heads=2,
        vocab_size=80,
        max_length=32,
        dropout=0.0,
        seed=0,
    )
    finetune(model, d / "train.jsonl", output=d / "ft", config=CONFIG, progress=False)
    return d


def fake_export(directory, tokenizer_json):
    """A valid export directory whose graph is tiny: logits = [sum(mask), -sum(mask)]."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["m", "axes"], ["s"], keepdims=1),
        helper.make_node("Neg", ["s"], ["n"]),
        helper.make_node("Concat", ["s", "n"], ["logits"], axis=1),
        helper.make_node("Shape", ["input_ids"], ["unused"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fake",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["B", "S"])
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 2])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    directory.mkdir()
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        directory / "model.onnx",
    )
    (directory / "tokenizer.json").write_text(tokenizer_json)
    manifest = {
        "format": "zoo-export",
        "labels": ["neg", "pos"],
        "task": "class",
        "max_length": 32,
        "serve": "model.onnx",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def copy(run, tmp_path):
    shutil.copytree(run / "ft", tmp_path / "ft")
    fake_export(tmp_path / "ex", (run / "ft" / "tokenizer.json").read_text())
    return tmp_path


def test_fake_export_serves(copy):
    from zoo.data import Table
    from zoo.inference import load_predictor, predict_table

    result = predict_table(load_predictor(copy / "ex"), Table("t", ["the cat"], None, None, [1]))
    assert result[0]["label"] == "neg" and result[0]["probability"] > 0.9  # logits [2, -2]


def resume(directory, train):
    return finetune(None, train, output=directory, progress=False, resume=True)


# (what to replace, how zoo reads it, the error it must give)
PLACES = [
    (
        "ft/model.safetensors",
        lambda d, r: zoo.load_model(d / "ft"),
        "model.safetensors: not a valid safetensors file",
    ),
    (
        "ft/tokenizer.json",
        lambda d, r: zoo.load_model(d / "ft"),
        "tokenizer.json: not a valid tokenizer.json",
    ),
    ("ft/config.json", lambda d, r: zoo.load_model(d / "ft"), "config.json: not valid JSON"),
    (
        f"ft/{STATE_NAME}",
        lambda d, r: resume(d / "ft", r / "train.jsonl"),
        f"{STATE_NAME}: not a zoo training checkpoint",
    ),
    (
        "ex/model.onnx",
        lambda d, r: zoo.inference.load_predictor(d / "ex"),
        "model.onnx: onnxruntime cannot load it",
    ),
    (
        "ex/tokenizer.json",
        lambda d, r: zoo.inference.load_predictor(d / "ex"),
        "tokenizer.json: not a valid tokenizer.json",
    ),
    (
        "ex/manifest.json",
        lambda d, r: zoo.inference.load_predictor(d / "ex"),
        "manifest.json: not valid JSON",
    ),
]


@pytest.mark.parametrize("file, read, message", PLACES, ids=[p[0] for p in PLACES])
def test_a_pickle_anywhere_is_never_executed(copy, run, never_unpickle, file, read, message):
    import zoo.inference  # noqa: F401  (used by the readers)

    (copy / file).write_bytes(pickle.dumps(Exploit(never_unpickle)))
    with pytest.raises(ZooError) as err:
        read(copy, run)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not never_unpickle.exists()


def test_pickles_beside_the_real_files_are_ignored(copy, run, never_unpickle):
    """model.pt in an export and pytorch_model.bin / *.pkl in a model directory are never opened."""
    from zoo.data import Table
    from zoo.inference import load_predictor, predict_table

    for file in ("ex/model.pt", "ft/pytorch_model.bin", "ft/optimizer.pt", "ft/training_args.bin"):
        (copy / file).write_bytes(pickle.dumps(Exploit(never_unpickle)))
    table = Table("t", ["the cat"], None, None, [1])
    assert predict_table(load_predictor(copy / "ex"), table) and predict_table(
        load_predictor(copy / "ft"), table
    )
    assert not never_unpickle.exists()


def test_hf_checkpoint_with_pickle_weights_is_refused(tmp_path, never_unpickle):
    transformers = pytest.importorskip("transformers")
    from test_hf import save_checkpoint

    from zoo.hf import import_pretrained

    save_checkpoint(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(pickle.dumps(Exploit(never_unpickle)))
    with pytest.raises(
        ZooError, match=r"has only pytorch_model\.bin, a pickle checkpoint, and zoo never unpickles"
    ):
        import_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").write_bytes(pickle.dumps(Exploit(never_unpickle)))
    with pytest.raises(ZooError, match=r"hf/model\.safetensors: not a valid safetensors file"):
        import_pretrained(tmp_path / "hf")
    assert not never_unpickle.exists() and transformers


def cuts(data: bytes):
    header = 8 + int.from_bytes(data[:8], "little")
    return {
        "empty": b"",
        "length only": data[:8],
        "half header": data[: header // 2],
        "header only": data[:header],
        "half data": data[: (header + len(data)) // 2],
        "last byte": data[:-1],
        "garbage header": data[:8] + b"\xff" * (header - 8) + data[header:],
        "huge length": (2**62).to_bytes(8, "little") + data[8:],
    }


@pytest.mark.parametrize("cut", list(cuts(b"\x10" + b"\x00" * 7 + b"{}" + b" " * 14)))
@pytest.mark.parametrize("file", ["ft/model.safetensors", f"ft/{STATE_NAME}", "hf/model.safetensors"])
def test_truncated_or_corrupt_safetensors_name_the_file(copy, run, file, cut):
    if file.startswith("hf"):
        pytest.importorskip("transformers")
        from test_hf import save_checkpoint

        save_checkpoint(copy / "hf")
    target = copy / file
    target.write_bytes(cuts(target.read_bytes())[cut])
    with pytest.raises(ZooError) as err:
        if file.startswith("hf"):
            from zoo.hf import import_pretrained

            import_pretrained(copy / "hf")
        elif STATE_NAME in file:
            resume(copy / "ft", run / "train.jsonl")
        else:
            zoo.load_model(copy / "ft")
    assert str(target) in str(err.value) and "\n" not in str(err.value)


def rewrite_state(path, change_info=None, change_tensors=None):
    with safe_open(str(path), framework="pt") as f:
        info = json.loads(f.metadata()["zoo_trainer"])
    tensors = load_file(str(path))
    if change_info:
        change_info(info)
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, str(path), metadata={"format": "pt", "zoo_trainer": json.dumps(info)})


STATE_DAMAGE = [
    (
        lambda i: i["spec"]["parts"]["encoder"].update(name="os:system"),
        None,
        "which plugin 'zoo.encoders' no longer provides",
    ),
    (
        lambda i: i["spec"]["parts"]["attention"].update(plugin="evil_module"),
        None,
        "from plugin 'evil_module', which is not installed",
    ),
    (
        lambda i: i["spec"]["sizes"].update(num_layers=10**9),
        None,
        "num_layers is 1000000000 but the weights hold only",
    ),
    (
        lambda i: i["spec"]["sizes"].update(d_model=2**40, num_heads=1),
        None,
        "cannot build transformer/sdpa/cls",
    ),
    (
        lambda i: i["spec"]["parts"]["head"]["options"].update(evil=1),
        None,
        "unknown option 'evil' for head 'cls'",
    ),
    (lambda i: i.pop("position"), None, "damaged training checkpoint ('position' is missing or not a dict)"),
    (lambda i: i["position"].update(step=-3), None, "'position.step' is missing or not a non-negative int"),
    (lambda i: i["config"].update(epochs="3"), None, "epochs must be a positive integer, got '3'"),
    (lambda i: i["config"].update(lr=[1]), None, "damaged training checkpoint"),
    (lambda i: i.update(tokenizer="{not json"), None, "damaged training checkpoint (its tokenizer"),
    (lambda i: i.update(labels=["a", "b", "c"]), None, "3 labels but num_labels is 2"),
    (lambda i: i.update(labels="ab"), None, "'labels' must be a list of strings"),
    (lambda i: i.update(param_groups=[{"lr": 1}]), None, "'param_groups' must be objects with 'params'"),
    (None, lambda t: t.pop("rng.torch"), "no RNG state 'rng.torch'"),
    (None, lambda t: t.pop("model.head.classifier.bias"), "missing tensor 'head.classifier.bias'"),
    (
        None,
        lambda t: t.update({"model.head.classifier.bias": torch.zeros(7)}),
        "has shape (7,), expected (2,)",
    ),
    (None, lambda t: t.update({"optim.0.exp_avg": torch.zeros(3)}), "optimizer tensor 'optim.0.exp_avg'"),
    (None, lambda t: t.update({"optim.999.exp_avg": torch.zeros(3)}), "optimizer tensor 'optim.999.exp_avg'"),
]


@pytest.mark.parametrize("info, tensors, message", STATE_DAMAGE)
def test_damaged_training_checkpoint_is_one_clean_error(copy, run, info, tensors, message):
    rewrite_state(copy / "ft" / STATE_NAME, info, tensors)
    with pytest.raises(ZooError) as err:
        resume(copy / "ft", run / "train.jsonl")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_json_never_imports_a_module(copy, run, tmp_path, monkeypatch):
    """A module on sys.path that announces its import; config.json and the trainer state name it everywhere."""
    marker = tmp_path / "imported"
    (tmp_path / "evil_zoo_module.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef run(**k): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = json.loads((copy / "ft" / "config.json").read_text())
    for kind in ("encoder", "attention", "head"):
        for fields in (
            {"plugin": "evil_zoo_module"},
            {"name": "evil_zoo_module:run"},
            {"name": "evil_zoo_module.run"},
        ):
            bad = json.loads(json.dumps(config))
            bad["parts"][kind].update(fields)
            (copy / "ft" / "config.json").write_text(json.dumps(bad))
            with pytest.raises(ZooError):
                zoo.load_model(copy / "ft")
            rewrite_state(
                copy / "ft" / STATE_NAME,
                lambda i, kind=kind, fields=fields: i["spec"]["parts"][kind].update(fields),
            )
            with pytest.raises(ZooError):
                resume(copy / "ft", run / "train.jsonl")
            shutil.copy(run / "ft" / STATE_NAME, copy / "ft" / STATE_NAME)
    assert not marker.exists() and "evil_zoo_module" not in sys.modules


@pytest.mark.parametrize(
    "change, message",
    [
        ({"serve": "../ft/model.onnx"}, "'serve' must name a .onnx file inside the export directory"),
        ({"serve": "/etc/passwd"}, "'serve' must name a .onnx file inside the export directory"),
        ({"serve": 5}, "'serve' must name a .onnx file inside the export directory, got 5"),
        ({"labels": "neg,pos"}, "'labels' must be a list of strings"),
        ({"max_length": "32"}, "'max_length' must be a positive integer, got '32'"),
        ({"task": ["class"]}, "'task' must be a string"),
    ],
)
def test_hostile_export_manifest(copy, change, message):
    from zoo.inference import load_predictor

    manifest = json.loads((copy / "ex" / "manifest.json").read_text())
    (copy / "ex" / "manifest.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(ZooError) as err:
        load_predictor(copy / "ex")
    assert message in str(err.value) and "manifest.json" in str(err.value)


@pytest.mark.parametrize(
    "index",
    [
        {"weight_map": {"a": "../../outside.safetensors"}},
        {"weight_map": {"a": "/abs.safetensors"}},
        {"weight_map": []},
        {},
        ["not", "an", "object"],
    ],
)
def test_hostile_shard_index_is_refused(tmp_path, index):
    pytest.importorskip("transformers")
    from test_hf import save_checkpoint

    from zoo.hf import import_pretrained

    save_checkpoint(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(
        ZooError,
        match=re.escape("model.safetensors.index.json: 'weight_map' must map tensors to .safetensors files"),
    ):
        import_pretrained(tmp_path / "hf")


PATH_LABELS = ["../../escaped", "/tmp/zoo-absolute-label", "a/b\\c", "..", "con", "x\n\ny"]


def test_path_like_labels_and_paths_in_config_write_nowhere_else(tmp_path):
    """Labels that look like paths, and paths recorded in config.json, through finetune, evaluate, a report."""
    inside = tmp_path / "work" / "deep"
    inside.mkdir(parents=True)
    rows = [{"text": f"w{i % 6} x y", "label": PATH_LABELS[i % 6]} for i in range(48)]
    train = write_jsonl(inside / "train.jsonl", rows)
    model = zoo.build_model(
        "transformer",
        "cls",
        d_model=16,
        num_layers=1,
        num_heads=2,
        vocab_size=80,
        max_length=32,
        dropout=0.0,
        seed=0,
    )
    model.spec.extra["provenance"] = {"train": str(tmp_path / "victim.txt"), "output": "../../.."}
    model.spec.tokenizer["trained_on"] = "../../victim.txt"
    (tmp_path / "victim.txt").write_text("keep me")
    before = sorted(p for p in tmp_path.rglob("*"))
    finetune(model, train, output=inside / "ft", config=CONFIG, progress=False)
    from zoo.data import read_table
    from zoo.inference import evaluate_table, load_predictor

    trained = zoo.load_model(inside / "ft")
    assert trained.labels == sorted(PATH_LABELS)
    metrics = evaluate_table(load_predictor(inside / "ft"), read_table(train))
    try:
        from zoo.reports import write_report

        write_report(metrics, inside / "report")
    except ZooError:  # matplotlib (the reports extra) missing: only report.md is not tested
        pass
    created = sorted(set(tmp_path.rglob("*")) - set(before))
    assert all(inside in p.parents for p in created), created
    assert (tmp_path / "victim.txt").read_text() == "keep me"
    assert not os.path.exists("/tmp/zoo-absolute-label")
    assert np.isfinite(metrics["accuracy"])
