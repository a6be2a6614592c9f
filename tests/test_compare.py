"""`zoo compare`: a 2×2 grid of tiny models end to end, failed rows, resume skips finished runs, shards and
merge, and the leaderboard's order."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_pretrain import ANIMALS, write_corpus

from zoo.cli import cli
from zoo.compare import CompareSpec, compare, leaderboard_markdown, merge, parse_shard, ranked
from zoo.errors import ZooError

SIZES = ["--set", "d_model=32", "--set", "num_layers=1", "--set", "num_heads=2", "--set", "vocab_size=120"]
FAST = ["--set", "finetune.epochs=1", "--set", "finetune.precision=fp32", "--set", "finetune.threads=1"]
PRE = [
    "--set",
    "pretrain.precision=fp32",
    "--set",
    "pretrain.batch_size=8",
    "--set",
    "pretrain.max_length=32",
    "--set",
    "pretrain.threads=1",
    "--set",
    "pretrain.eval_every=2",
]


def write_train(path):
    path.write_text("text,label\n" + "".join(f"the {a} sat,{a}\n" for a in ANIMALS * 6))
    return path


def rows_of(output):
    return [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_compare_a_2x2_grid_with_pretraining_then_a_rerun_skips_it(tmp_path):
    corpus, train = write_corpus(tmp_path / "corpus.txt", docs=200), write_train(tmp_path / "train.csv")
    args = [
        "compare",
        "--attention",
        "sdpa,alibi",
        "--arch",
        "transformer,prenorm",
        "--pretrain",
        str(corpus),
        "--pretrain-steps",
        "4",
        "--train",
        str(train),
        "--eval",
        str(train),
        "-o",
        str(tmp_path / "cmp"),
        *SIZES,
        *FAST,
        *PRE,
    ]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    rows = rows_of(tmp_path / "cmp")
    assert sorted(r["run"] for r in rows) == [
        "prenorm+alibi",
        "prenorm+sdpa",
        "transformer+alibi",
        "transformer+sdpa",
    ]
    for r in rows:
        assert r["status"] == "ok", r
        assert r["pretrain"]["steps"] == 4 and r["pretrain"]["tokens"] == 4 * 8 * 32
        assert r["pretrain"]["tokens_per_s"] > 0 and r["pretrain"]["mlm_loss"] > 0
        assert 0 <= r["finetune"]["value"] <= 1 and r["finetune"]["metric"] == "macro_f1"
        assert r["params"] > 0 and r["peak_memory_mb"] > 0 and r["wall_s"] > 0 and r["seed"] == 0
    values = [r["finetune"]["value"] for r in rows]
    assert values == sorted(values, reverse=True)  # results.jsonl is in leaderboard order
    board = (tmp_path / "cmp" / "leaderboard.md").read_text()
    assert board.count("| ok |") == 4 and board in out.output
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cmp" / "runs").glob("*/result.json")}
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and again.output.count("finished before (ok); skipped") == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_failed_runs_are_rows_with_their_reason_and_shards_merge(tmp_path):
    train = write_train(tmp_path / "train.csv")
    spec = CompareSpec(
        archs=["transformer"],
        attentions=["sdpa", "local"],
        train=str(train),
        label_column="nope",
        sizes={"d_model": 16, "num_layers": 1, "num_heads": 2, "vocab_size": 60},
    )
    compare(spec, tmp_path / "a", shard=(1, 2), progress=False)
    compare(spec, tmp_path / "b", shard=(2, 2), progress=False)
    assert [r["run"] for r in rows_of(tmp_path / "a")] == ["transformer+sdpa"]
    assert [r["run"] for r in rows_of(tmp_path / "b")] == ["transformer+local"]
    rows = merge(tmp_path / "merged", [tmp_path / "a", tmp_path / "b"], progress=False)
    assert sorted(r["run"] for r in rows) == ["transformer+local", "transformer+sdpa"]
    for r in rows:
        assert r["status"] == "failed" and "no label column 'nope'" in r["reason"] and "\n" not in r["reason"]
    assert (tmp_path / "merged" / "leaderboard.md").read_text().count("failed: ") == 2
    assert len(list((tmp_path / "merged" / "runs").glob("*/result.json"))) == 2
    again = compare(spec, tmp_path / "merged", progress=False)  # finished (failed) runs are not rerun
    assert again == rows_of(tmp_path / "merged") and len(again) == 2
    spec.attentions, spec.seed = ["sdpa"], 1  # a result of another setting is not taken for this one's
    rerun = compare(spec, tmp_path / "merged", progress=False)
    assert {r["run"]: r["seed"] for r in rerun} == {"transformer+sdpa": 1, "transformer+local": 0}


def test_leaderboard_order_and_arguments():
    ok = {
        "status": "ok",
        "arch": "a",
        "finetune": {"metric": "macro_f1", "value": 0.5, "lower_is_better": False},
    }
    rows = [
        {**ok, "run": "a+x", "attention": "x"},
        {**ok, "run": "a+y", "attention": "y", "finetune": {**ok["finetune"], "value": 0.7}},
        {"run": "a+z", "arch": "a", "attention": "z", "status": "failed", "reason": "the loss is nan"},
    ]
    assert [r["run"] for r in ranked(rows)] == ["a+y", "a+x", "a+z"]
    table = leaderboard_markdown(rows).splitlines()
    assert table[2].startswith("| 1 | a | y | 0.7000") and table[4].endswith("failed: the loss is nan |")
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/2", "0/2", "x"):
        with pytest.raises(ZooError, match="shard"):
            parse_shard(bad)
    out = CliRunner().invoke(cli, ["compare", "--attention", "sdpaa", "--train", "t.csv", "-o", "o"])
    assert out.exit_code == 2 and "sdpa" in out.output
