"""Training curves, confusion matrix and the Markdown report."""

from __future__ import annotations

import struct
import sys

import pytest

from zoo.errors import ZooError
from zoo.metrics import classification_metrics
from zoo.reports import plot_curves, write_report


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_has_per_class_rows_and_a_confusion_picture(tmp_path):
    labels = ["neg", "neu", "pos"]
    metrics = classification_metrics([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], labels)
    report = write_report(metrics, tmp_path, headline=("accuracy", "macro_f1")).read_text()
    assert "| accuracy | 0.6667 |" in report
    assert "| neg | 0.500 | 0.500 | 0.500 | 2 |" in report  # tp 1, fp 1 (a pos), fn 1 (a neu)
    assert "| pos | 1.000 | 0.667 | 0.800 | 3 |" in report
    width, height = png_size(tmp_path / "confusion.png")
    assert width > 200 and height > 200


def test_curves_png(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "eval": {"loss": 1.1 / e, "macro_f1": 0.5 + e / 10}}
        for e in (1, 2, 3)
    ]
    width, height = png_size(plot_curves(history, tmp_path / "curves.png"))
    assert width > height > 100


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ZooError, match=r"run: pip install 'zoo\[reports\]'"):
        plot_curves([{"epoch": 1, "train_loss": 1.0}], tmp_path / "c.png")


def test_finetune_writes_curves_and_evaluate_writes_a_report(tmp_path):
    import random

    from click.testing import CliRunner

    from zoo.cli import cli

    rng = random.Random(0)
    rows = ["text,label"] + [
        f"{' '.join(rng.choice(words) for _ in range(5))},{label}"
        for label, words in (("good", ["great", "fine", "love"]), ("bad", ["awful", "hate", "poor"]))
        for _ in range(40)
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    runner = CliRunner()
    assert (
        runner.invoke(
            cli,
            [
                "build",
                "--d-model",
                "16",
                "--num-heads",
                "2",
                "--num-layers",
                "1",
                "--vocab-size",
                "60",
                "-o",
                str(tmp_path / "m"),
            ],
        ).exit_code
        == 0
    )
    result = runner.invoke(
        cli,
        [
            "finetune",
            str(tmp_path / "m"),
            "--train",
            str(tmp_path / "train.csv"),
            "--eval",
            str(tmp_path / "train.csv"),
            "--epochs",
            "2",
            "--threads",
            "1",
            "-q",
            "--batch-size",
            "16",
            "--tensorboard",
            str(tmp_path / "tb"),
            "-o",
            str(tmp_path / "ft"),
        ],
    )
    assert result.exit_code == 0, result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 11))  # 80 rows / 16 x 2 epochs
    assert {"train/lr", "train/tokens_per_s", "epoch/train_loss", "eval/macro_f1"} <= set(
        events.Tags()["scalars"]
    )
    assert len(events.Scalars("eval/accuracy")) == 2
    width, height = png_size(tmp_path / "ft" / "curves.png")
    assert width > height > 100
    result = runner.invoke(
        cli,
        [
            "evaluate",
            str(tmp_path / "ft"),
            "--data",
            str(tmp_path / "train.csv"),
            "--report",
            str(tmp_path / "report"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| bad |" in report and "| good |" in report
    png_size(tmp_path / "report" / "confusion.png")


@pytest.mark.parametrize("task", ["class", "multi", "float", "token"])
def test_numpy_eval_loss_equals_the_heads_torch_loss(task):
    import torch

    import zoo

    head = {"class": "cls", "multi": "multilabel", "float": "regression", "token": "token-cls"}[task]
    model = zoo.build_model(
        "transformer",
        head,
        d_model=16,
        num_heads=2,
        num_layers=1,
        vocab_size=30,
        num_labels=1 if task == "float" else 3,
        seed=0,
    ).eval()
    torch.manual_seed(1)
    ids, mask = torch.randint(0, 30, (4, 6)), torch.ones(4, 6, dtype=torch.long)
    labels = {
        "class": torch.tensor([0, 2, 1, 2]),
        "multi": torch.randint(0, 2, (4, 3)),
        "float": torch.randn(4),
        "token": torch.randint(0, 3, (4, 6)),
    }[task]
    if task == "token":
        labels[0, 4:] = -100  # ignored positions
    with torch.no_grad():
        logits = model(ids, mask)
        expected = model.loss(logits, labels, mask).item()
    rows = list(logits.numpy())
    gold = list(labels.numpy()) if task != "float" else list(labels.numpy()[:, None])
    assert model.task.evaluate(rows, gold, ["a", "b", "c"])["loss"] == pytest.approx(expected, rel=1e-5)
