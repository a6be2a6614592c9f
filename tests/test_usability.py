"""What a new user trips over (issue 18): encodings said and chosen, plain-text files, one record per
output line, quiet broken pipes, flag mistakes caught before any work, an existing report kept, a clamped
--max-length said, thread counts that follow the CPUs the process may use, gqa's groups, aliases listed,
`python -m zoo` beside a clone named zoo."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from test_training import synthetic, write_jsonl

import zoo
from zoo import threads
from zoo.cli import cli
from zoo.data import read_table
from zoo.errors import ZooError
from zoo.tokenizer import train_wordpiece

TEXTS = ["good happy cat", "bad sad dog", "the mat was so good"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("usability")
    model = zoo.build_model(
        "transformer",
        "cls",
        d_model=8,
        num_layers=1,
        num_heads=1,
        vocab_size=40,
        max_length=16,
        dropout=0.0,
        seed=0,
        labels=["neg", "pos"],
    )
    model.tokenizer = train_wordpiece(TEXTS * 10, vocab_size=40)
    return model.save(d / "m")


def write_csv(path, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


# ---- encodings and plain-text files -------------------------------------------------------------------


def test_a_cp1252_file_is_said_once_and_encoding_chooses(tmp_path, capsys):
    path = write_csv(tmp_path / "d.csv", [("caf\xe9 \u201cquoted\u201d", "x"), ("cr\xe8me", "y")], "cp1252")
    assert read_table(path).texts == ["caf\xe9 \u201cquoted\u201d", "cr\xe8me"]
    read_table(path)
    err = capsys.readouterr().err
    assert err.count(f"zoo: {path} is not UTF-8; reading it as cp1252 (pass --encoding") == 1  # once
    assert read_table(path, encoding="latin-1").texts[1] == "cr\xe8me"  # chosen: nothing to say
    assert capsys.readouterr().err == ""
    with pytest.raises(ZooError, match=r"^unknown encoding 'utf-9' \(e\.g\. utf-8"):
        read_table(path, encoding="utf-9")
    with pytest.raises(ZooError, match=r"^unknown encoding 'base64'"):
        read_table(path, encoding="base64")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_files_with_a_byte_order_mark_are_decoded(tmp_path, encoding):
    rows = [("caf\xe9 \U0001f600", "x"), ("plain", "y")]
    with open(tmp_path / "d.csv", "w", newline="", encoding=encoding) as f:
        if encoding == "utf-16-be":
            f.write("\ufeff")  # the -be codec writes no mark of its own
        csv.writer(f).writerows([("text", "label"), *rows])
    table = read_table(tmp_path / "d.csv")
    assert table.texts == [r[0] for r in rows] and table.labels == ["x", "y"]


def test_predict_reads_a_text_file_of_one_text_per_line(tmp_path, model_dir):
    (tmp_path / "t.txt").write_text("\n".join([TEXTS[0], "", TEXTS[1] + "\r", TEXTS[2]]) + "\n")
    from_file = invoke("predict", model_dir, "--file", tmp_path / "t.txt", "--json")
    from_args = invoke("predict", model_dir, *TEXTS, "--json")
    assert from_file.exit_code == 0, from_file.output
    assert from_file.output == from_args.output  # blank lines skipped, line endings dropped


def test_predict_encoding_option(tmp_path, model_dir):
    path = tmp_path / "t.csv"
    path.write_bytes("text\ncr\xe8me\n".encode("latin-1"))
    result = invoke("predict", model_dir, "--file", path, "--encoding", "latin-1", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["text"] == "cr\xe8me"
    result = invoke("predict", model_dir, "--file", path, "--encoding", "nope")
    assert result.exit_code == 2 and result.output.startswith("error: unknown encoding 'nope'")


# ---- output ------------------------------------------------------------------------------------------


def test_plain_text_output_is_one_line_per_text(model_dir):
    texts = ["two\nlines", "a\ttab", "back\\slash\r\nend"]
    result = invoke("predict", model_dir, *texts)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert [line.split("\t")[2] for line in lines] == ["two\\nlines", "a\\ttab", "back\\\\slash\\r\\nend"]
    as_json = invoke("predict", model_dir, *texts, "--json")
    assert [json.loads(line)["text"] for line in as_json.output.splitlines()] == texts  # JSON keeps them


def test_a_closed_pipe_is_quiet(tmp_path, model_dir):
    rows = [(TEXTS[i % 3], "") for i in range(6000)]  # far more output than a pipe holds
    write_csv(tmp_path / "big.csv", rows)
    run = subprocess.Popen(
        [sys.executable, "-m", "zoo", "predict", str(model_dir), "--file", str(tmp_path / "big.csv")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert run.stdout.readline()  # like `| head -1`: read one line and go
    run.stdout.close()
    err = run.stderr.read().decode()
    assert run.wait(120) in (0, 141), err
    assert err == ""


# ---- mistakes caught before any work -------------------------------------------------------------------


def test_export_flag_mistakes_come_before_loading_the_model(tmp_path):
    for flags in (["--optimize"], ["--torchscript", "--quantize", "int8"]):
        result = invoke("export", tmp_path / "no-such-model", *flags, "-o", tmp_path / "out")
        assert result.exit_code == 2
        assert result.output == "error: --optimize and --quantize work on the ONNX graph; add --onnx\n"
    result = invoke("export", tmp_path / "no-such-model", "-o", tmp_path / "out")
    assert result.output == "error: nothing to export: pass --onnx and/or --torchscript\n"


def test_evaluate_keeps_an_existing_report_without_overwrite(tmp_path, model_dir):
    data = write_csv(tmp_path / "d.csv", [(TEXTS[0], "pos"), (TEXTS[1], "neg")])
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("mine")
    result = invoke("evaluate", model_dir, "--data", data, "--report", tmp_path / "report")
    assert result.exit_code == 2
    assert (
        result.output
        == f"error: {tmp_path / 'report'} already exists and is not empty; pass --overwrite to replace it\n"
    )
    assert (tmp_path / "report" / "report.md").read_text() == "mine"
    result = invoke("evaluate", model_dir, "--data", data, "--report", tmp_path / "report", "--overwrite")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "report.md").read_text().startswith("# ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "report"]  # no staging folder left
    for inside in (model_dir, model_dir.parent, tmp_path):  # --overwrite never replaces the model or the data
        result = invoke("evaluate", model_dir, "--data", data, "--report", inside, "--overwrite")
        assert result.exit_code == 2 and "holds the model or the data" in result.output
    assert (model_dir / "config.json").is_file()


def test_a_max_length_above_the_models_is_said(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 32, 0))
    build = [
        "build",
        "--d-model",
        "16",
        "--num-layers",
        "1",
        "--num-heads",
        "2",
        "--vocab-size",
        "80",
        "--max-length",
        "32",
        "-o",
        tmp_path / "m",
    ]
    assert invoke(*build).exit_code == 0
    common = [
        "finetune",
        tmp_path / "m",
        "--train",
        tmp_path / "train.jsonl",
        "--epochs",
        "1",
        "--threads",
        "1",
        "-q",
    ]
    asked = invoke(*common, "--max-length", "4000", "-o", tmp_path / "a")
    assert asked.exit_code == 0, asked.output
    assert "zoo: --max-length 4000 is more than this model takes; texts are cut at 32 tokens" in asked.stderr
    default = invoke(*common, "-o", tmp_path / "b")  # the default (256) is a cap, not a request: no note
    assert default.exit_code == 0 and "--max-length" not in default.stderr


# ---- threads -----------------------------------------------------------------------------------------


def cgroup(tmp_path, files: dict[str, str], membership: str):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "proc-cgroup").write_text(membership)
    return tmp_path, tmp_path / "proc-cgroup"


@pytest.mark.parametrize(
    "files, membership, quota",
    [
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # v2, no limit
        ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),  # v2 in a container
        (
            {"cpu.max": "max 100000\n", "user.slice/job/cpu.max": "50000 100000\n"},
            "0::/user.slice/job\n",
            0.5,
        ),
        (
            {"user.slice/cpu.max": "200000 100000\n", "user.slice/job/cpu.max": "max 100000\n"},
            "0::/user.slice/job\n",
            2.0,
        ),  # an ancestor's limit holds
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),  # v1
        (
            {
                "cpu,cpuacct/docker/x/cpu.cfs_quota_us": "300000\n",
                "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n",
            },
            "4:cpu,cpuacct:/docker/x\n3:memory:/docker/x\n",
            3.0,
        ),
        ({}, "garbage\n", None),
    ],
)
def test_the_cgroup_cpu_quota_is_read(tmp_path, files, membership, quota):
    root, proc = cgroup(tmp_path, files, membership)
    assert threads.cgroup_cpu_quota(root, proc) == quota
    affinity = len(os.sched_getaffinity(0))
    expected = affinity if quota is None else min(affinity, -(-quota // 1))
    assert threads.usable_cpus(root, proc) == max(1, int(expected))


def test_default_threads_follow_the_usable_cpus(monkeypatch):
    from zoo.device import cpu_threads

    monkeypatch.setattr(threads, "usable_cpus", lambda *a: 6)
    assert threads.default_threads() == 6 and threads.default_threads(4) == 1
    assert cpu_threads(2) == 3 and cpu_threads(2, requested=5) == 5  # fine-tuning shares them per process


def test_threads_option_reaches_onnxruntime_and_torch(monkeypatch):
    import torch

    from zoo.export.runtime import session_options

    before = torch.get_num_threads()
    try:
        assert threads.use(3) == 3 and torch.get_num_threads() == 3
        assert session_options().intra_op_num_threads == 3
        threads.use(None)
        assert threads.requested() is None and session_options(2).intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)
    for command in ("predict", "evaluate", "export", "demo", "finetune"):
        assert "--threads" in invoke(command, "--help").output, command


def test_the_cli_asks_openmp_to_wait_passively(monkeypatch):
    import zoo.cli as zoo_cli

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(zoo_cli, "cli", lambda **kwargs: None)
    zoo_cli.main()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice stands
    zoo_cli.main()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


# ---- parts ---------------------------------------------------------------------------------------------


def test_gqa_makes_real_groups_and_mqa_one_key_value_head():
    def kv_heads(attention, num_heads):
        model = zoo.build_model(
            "transformer",
            "cls",
            attention,
            d_model=8 * num_heads,
            num_heads=num_heads,
            num_layers=1,
            vocab_size=40,
            max_length=16,
            seed=0,
        )
        return model.encoder.blocks[0].attention.num_kv_heads

    assert [kv_heads("gqa", h) for h in (2, 4, 8, 12, 16)] == [1, 2, 2, 3, 4]
    assert [kv_heads("mqa", h) for h in (2, 8)] == [1, 1]


def test_parts_lists_aliases(inline_plugin):
    from zoo import hookimpl

    class Aliased:
        @hookimpl
        def register_attention(self, register):
            register("twofold", "zoo.plugins.attention.sdpa:SDPAttention", aliases=["double", "x2"])

    inline_plugin(Aliased(), name="aliased")
    lines = invoke("parts", "--kind", "attention").output.splitlines()
    assert lines[0].split()[:3] == ["KIND", "NAME", "ALIASES"]
    assert next(line for line in lines if " twofold " in line).split()[:4] == [
        "attention",
        "twofold",
        "double,",
        "x2",
    ]


# ---- running from the folder that holds a clone ----------------------------------------------------------


def test_python_dash_m_zoo_beside_a_clone_named_zoo(tmp_path):
    (tmp_path / "zoo" / "zoo").mkdir(
        parents=True
    )  # a clone: a folder named zoo, with no __init__.py at its top
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "parts", "--kind", "head"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "token-cls" in result.stdout, result.stderr
