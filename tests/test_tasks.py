"""Tasks (zoo.tasks, plugins/tasks): label encoding per built-in task, and the task contract checked for
every registered task (so a task a plugin adds is tested without anyone writing a test for it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo import testing
from zoo.data import Table, read_table
from zoo.errors import ZooError
from zoo.manager import get_registry
from zoo.tasks import IGNORE_INDEX, Task, class_name, head_task, load_task, lookup
from zoo.tokenizer import train_wordpiece


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def targets(task: Task, table: Table, names, num_labels=1, tokenizer=None):
    encodings = task.inputs(tokenizer, table, 16) if tokenizer else [None] * len(table)
    return task.targets(table, names, num_labels, encodings)


def test_class_labels_strings_and_integers(tmp_path):
    table = read_table(
        write(
            tmp_path / "d.jsonl",
            "".join(json.dumps({"text": "t", "label": v}) + "\n" for v in [10, 2, 2.0, 1]),
        )
    )
    task = load_task("classification")
    names = task.label_names(table, None)
    assert names == ["1", "2", "10"]  # numeric labels sort as numbers
    assert targets(task, table, names) == [2, 1, 1, 0]
    with pytest.raises(ZooError, match=r"line 1: label '10' is not one of the model's labels \(1, 2\)"):
        targets(task, table, ["1", "2"])


def test_multilabel_regression_and_token_labels(tmp_path):
    multi = read_table(
        write(tmp_path / "m.csv", 'text,label\na,"x|y"\nb,y\nc,"[""z""]"\nd,\n'), allow_empty_labels=True
    )
    task = load_task("multilabel")
    names = task.label_names(multi, None)
    assert names == ["x", "y", "z"]
    assert np.array_equal(np.stack(targets(task, multi, names)), [[1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    floats = read_table(write(tmp_path / "f.csv", "text,score\na,0.5\nb,oops\n"))
    with pytest.raises(ZooError, match=r"f\.csv line 3: label 'oops' is not a number$"):
        targets(load_task("regression"), floats, None, 1)
    tokens = read_table(
        write(
            tmp_path / "t.jsonl",
            '{"tokens": ["Paris", "is", "big"], "tags": ["LOC", "O", "O"]}\n'
            '{"tokens": ["Bob"], "tags": ["PER", "O"]}\n',
        ),
        label_column="tags",
    )
    task = load_task("token-classification")
    tokenizer = train_wordpiece(["paris is big bob"] * 3, vocab_size=60)
    with pytest.raises(ZooError, match=r"t\.jsonl line 2: 1 words but 2 labels$"):
        targets(task, tokens, task.label_names(tokens, None), tokenizer=tokenizer)


def test_an_empty_label_cell_is_refused_unless_the_task_allows_it(tmp_path):
    path = write(tmp_path / "m.csv", "text,label\na,x\nb,\n")
    with pytest.raises(ZooError, match=r"m\.csv line 3: no label in column 'label'"):
        read_table(path)
    assert read_table(path, allow_empty_labels=True).labels == ["x", ""]
    assert load_task("multilabel").allows_empty_labels and not load_task("classification").allows_empty_labels


def test_token_labels_go_to_each_words_first_piece(tmp_path):
    table = read_table(write(tmp_path / "t.jsonl", '{"text": "walking dog", "label": "V N"}\n'))
    tokenizer = train_wordpiece(["walk walking walked dog dogs"] * 5, vocab_size=40)
    task = load_task("token-classification")
    names = task.label_names(table, None)
    aligned = targets(task, table, names, tokenizer=tokenizer)
    pieces = tokenizer.encode(["walking", "dog"], is_pretokenized=True)
    expected = [IGNORE_INDEX] * len(pieces.ids)
    expected[pieces.word_ids.index(0)] = names.index("V")
    expected[pieces.word_ids.index(1)] = names.index("N")
    assert aligned[0].tolist() == expected


def test_heads_name_their_task_and_first_wave_heads_still_work():
    assert {p.name: head_task(p.ref) for p in get_registry().parts("head") if p.plugin == "zoo.heads"} == {
        "cls": "classification",
        "multilabel": "multilabel",
        "regression": "regression",
        "token-cls": "token-classification",
        "embedding": "embedding",
        "rerank": "rerank",
        "mlm": "mlm",
    }
    from zoo.registry import make_part

    legacy = make_part("head", "old", "old-head", "x:y", capabilities={"labels": "multi"})
    from zoo.tasks import LEGACY_LABEL_FORMATS

    assert LEGACY_LABEL_FORMATS[legacy.capabilities["labels"]] == "multilabel"
    with pytest.raises(TypeError, match="only heads take it"):
        make_part("attention", "p", "a", "x:y", task="classification")


def test_a_head_cannot_be_paired_with_another_task():
    with pytest.raises(ZooError, match="head 'cls' serves task 'classification', not 'regression'"):
        zoo.build_model("transformer", "cls", task="regression", **testing.TINY_SIZES)


def test_task_options_are_checked_like_any_part_option(tmp_path):
    from click.testing import CliRunner

    from zoo.cli import cli

    result = CliRunner().invoke(cli, ["build", "--set", "task.nope=1", "-o", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "unknown option 'nope' for task 'classification'" in result.output


def test_better_knows_lower_is_better_for_mse():
    regression, classification = load_task("regression"), load_task("classification")
    assert (
        regression.better(0.1, 0.2)
        and not classification.better(0.1, 0.2)
        and classification.better(0.1, None)
    )


def test_an_unknown_task_suggests_the_close_name():
    with pytest.raises(ZooError, match="unknown task 'regresion'; did you mean 'regression'"):
        load_task("regresion")


# ---- the contract, for every registered task ----------------------------------------------------------


@pytest.mark.parametrize("name", testing.parts("task"))
def test_every_task_meets_the_contract(name):
    """Each head that serves the task: shapes, loss, backward, padding, save/load and the task's own
    evaluate/agreement on the model's outputs (export is covered by the export matrix)."""
    assert testing.check_part("task", name, export=False)


@pytest.mark.parametrize("name", testing.parts("task"))
def test_every_task_module_imports_without_torch(name):
    """Serving an export must not need torch: a task's module imports with torch blocked."""
    import subprocess
    import sys

    part = get_registry().resolve("task", name)
    module = (
        part.factory.partition(":")[0] if isinstance(part.factory, str) else type(part.factory).__module__
    )
    code = (
        "import sys; sys.modules['torch'] = None; import importlib; "
        f"importlib.import_module({module!r}); from zoo.tasks import load_task; load_task({part.ref!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class ParityTask(Task):
    """A third-party task: is the number of words even or odd? One logit; accuracy picks the best epoch."""

    main_metric = "accuracy"
    summary_metrics = ("accuracy",)
    num_outputs = 1

    def target(self, label, index, num_labels, text, encoding, where):
        return float(lookup(index, class_name(label)))

    def collate(self, targets):
        return torch.tensor(targets, dtype=torch.float32)

    def evaluate(self, outputs, targets, names):
        x, y = np.concatenate(outputs), np.asarray(targets)
        return {
            "accuracy": float(((x > 0) == (y > 0.5)).mean()),
            "loss": float(np.mean((x > 0) != (y > 0.5))),
        }

    def predict(self, table, encodings, outputs, names, top_k=1):
        return [{"text": t, "label": names[int(x[0] > 0)]} for t, x in zip(table.texts, outputs)]

    def format_prediction(self, result):
        return f"{result['label']}\t{result['text']}"

    def synthetic_labels(self, batch, seq, num_labels, generator):
        return torch.randint(0, 2, (batch,), generator=generator).float()


class ParityHead(torch.nn.Module):
    def __init__(self, *, d_model, num_labels, dropout):
        super().__init__()
        self.classifier = torch.nn.Linear(d_model, 1)

    def forward(self, hidden, mask=None):
        from zoo.nn import pool

        return self.classifier(pool(hidden, mask, "mean"))

    def loss(self, logits, labels, mask=None):
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float().squeeze(-1), labels.float()
        )


class ParityPlugin:
    @zoo.hookimpl
    def register_tasks(self, register):
        register("parity", ParityTask, description="even or odd word count")

    @zoo.hookimpl
    def register_heads(self, register):
        register("parity-head", ParityHead, task="parity")


@pytest.fixture
def parity_plugin():
    from zoo.manager import pm

    pm.register(ParityPlugin(), name="parity-plugin")
    try:
        yield
    finally:
        pm.unregister(name="parity-plugin")


def test_a_third_party_task_trains_evaluates_and_predicts_through_the_cli(parity_plugin, tmp_path):
    from click.testing import CliRunner

    from zoo.cli import cli

    assert testing.check_part("task", "parity", export=False) == [
        "task 'parity' with encoder 'transformer' and attention 'sdpa' and head 'parity-head'"
    ]
    rows = [{"text": " ".join(["w"] * n), "label": "even" if n % 2 == 0 else "odd"} for n in range(1, 9)] * 4
    data = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    for args in (
        [
            "build",
            "--head",
            "parity-head",
            "--labels",
            "even,odd",
            "--d-model",
            "16",
            "--num-layers",
            "1",
            "--num-heads",
            "2",
            "--vocab-size",
            "40",
            "-o",
            str(tmp_path / "m"),
        ],
        [
            "finetune",
            str(tmp_path / "m"),
            "--train",
            str(data),
            "--eval",
            str(data),
            "--epochs",
            "1",
            "-q",
            "-o",
            str(tmp_path / "ft"),
        ],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["sizes"]["num_labels"] == 1  # one score
    spec = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert spec["parts"]["task"] == {"name": "parity", "plugin": "parity-plugin", "options": {}}
    assert spec["labels"] == ["even", "odd"] and spec["extra"]["training"]["best"]["metric"] == "accuracy"
    evaluated = runner.invoke(cli, ["evaluate", str(tmp_path / "ft"), "--data", str(data), "--json"])
    assert json.loads(evaluated.output)["task"] == "parity"
    predicted = runner.invoke(cli, ["predict", str(tmp_path / "ft"), "w w", "w w w"])
    assert [line.split("\t")[1] for line in predicted.output.splitlines()] == ["w w", "w w w"]
    assert {line.split("\t")[0] for line in predicted.output.splitlines()} <= {"even", "odd"}
