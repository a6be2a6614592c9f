"""A small run through the CLI: build -> finetune -> evaluate -> predict, with star and word labels.
(The CI script examples/zoo-ordinal/ci_end_to_end.py adds the ONNX export and predictions on it.)"""

import json

import pytest
from click.testing import CliRunner
from zoo_ordinal import stars

from zoo.cli import cli

TINY = [
    "--d-model",
    "32",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--vocab-size",
    "100",
    "--max-length",
    "16",
]
TRAIN = ["--epochs", "8", "--lr", "1e-2", "--batch-size", "16", "--threads", "1", "-q"]
WORDS = ["bad", "poor", "ok", "good", "great"]


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("stars")
    return {
        "train": stars.write(path / "train.csv", 300, seed=0),
        "test": stars.write(path / "test.csv", 100, seed=1),
        "train_words": stars.write(path / "train_words.csv", 300, seed=0, names=WORDS),
        "dir": path,
    }


def test_build_finetune_evaluate_predict_on_star_ratings(data):
    m, ft = data["dir"] / "m", data["dir"] / "ft"
    run("build", "--head", "ordinal", *TINY, "-o", m)
    run("finetune", m, "--train", data["train"], *TRAIN, "-o", ft)
    assert json.loads((ft / "config.json").read_text())["labels"] == ["1", "2", "3", "4", "5"]
    metrics = json.loads(run("evaluate", ft, "--data", data["test"], "--json"))
    assert metrics["task"] == "ordinal" and metrics["n"] == 100
    assert metrics["mae"] < 0.6 and metrics["qwk"] > 0.7  # the counts of good/bad words are easy to learn
    report = run("evaluate", ft, "--data", data["test"])
    assert report.splitlines()[1].startswith("mae ") and "qwk" in report and "confusion matrix" in report
    rows = [
        json.loads(line)
        for line in run(
            "predict", ft, "--json", "great lovely excellent good food", "awful bad terrible poor"
        ).splitlines()
    ]
    assert [r["label"] for r in rows] == ["5", "1"]


def test_word_labels_keep_the_order_given_to_zoo_build(data):
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            str(data["dir"] / "m"),
            "--train",
            str(data["train_words"]),
            *TRAIN,
            "-o",
            str(data["dir"] / "unordered"),
        ],
    )
    assert result.exit_code == 2
    assert (
        "ordinal labels that are not all numbers (bad, good, great, ok, poor) need an order" in result.output
    )
    mw, ftw = data["dir"] / "mw", data["dir"] / "ftw"
    run("build", "--head", "ordinal", "--labels", ",".join(WORDS), *TINY, "-o", mw)
    run("finetune", mw, "--train", data["train_words"], *TRAIN, "-o", ftw)
    assert json.loads((ftw / "config.json").read_text())["labels"] == WORDS  # not sorted alphabetically
    rows = [
        json.loads(line)
        for line in run("predict", ftw, "--json", "great lovely excellent good food").splitlines()
    ]
    assert (rows[0]["label"], rows[0]["rank"]) == ("great", 4)
