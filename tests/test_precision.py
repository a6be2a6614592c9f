"""bf16 on CPU: ISA detection (simulated machines), the choice auto makes, the inference agreement gate,
--precision honoured and recorded by finetune, predict and evaluate, and weights cast once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_training import synthetic, write_jsonl

import zoo
from zoo import cpu, precision
from zoo.cli import cli
from zoo.data import Table
from zoo.device import DistEnv, isa, pick_precision, resolve
from zoo.inference import ModelPredictor

EPYC = (
    "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n\n"
)
SPR = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t: avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n"
OLD = "model name\t: Intel(R) Xeon(R) CPU E5-2690 v4\nflags\t: sse4_2 avx avx2 fma\n"
GRAVITON = (
    "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"
)
TINY = [
    "--arch",
    "transformer",
    "--d-model",
    "32",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--vocab-size",
    "120",
    "--max-length",
    "64",
    "--dropout",
    "0",
]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize(
    "text, bf16, int8, model",
    [
        (EPYC, "AVX512-BF16", "AVX512-VNNI", "AMD EPYC 9B14"),
        (SPR, "AMX-BF16", "AMX-INT8", "Intel(R) Xeon(R) Platinum 8481C"),
        (OLD, None, None, "Intel(R) Xeon(R) CPU E5-2690 v4"),
        (GRAVITON, "ARM-BF16", "ARM-I8MM", "unknown CPU"),
    ],
    ids=["zen4", "sapphire-rapids", "broadwell", "graviton"],
)
def test_cpuinfo_gives_the_isa(text, bf16, int8, model):
    info = cpu.parse_cpuinfo(text)
    assert (info.bf16_isa, info.int8_isa, info.model, info.native_bf16) == (
        bf16,
        int8,
        model,
        bf16 is not None,
    )
    assert ("no AMX" in info.summary()) == ("amx_bf16" not in text)


def test_auto_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch):
    assert pick_precision("auto", "cpu", bf16_supported=True) == "bf16"
    assert pick_precision("auto", "cpu", bf16_supported=False) == "fp32"
    for text, expected in ((EPYC, "bf16"), (SPR, "bf16"), (OLD, "fp32")):
        monkeypatch.setattr(cpu, "detect", lambda text=text: cpu.parse_cpuinfo(text))
        assert resolve("cpu", "auto", DistEnv()) == ("cpu", expected)
        assert resolve("cpu", "fp32", DistEnv()) == ("cpu", "fp32")
    assert isa("cpu", "bf16", cpu.parse_cpuinfo(SPR)) == "AMX-BF16"
    assert isa("cpu", "bf16", cpu.parse_cpuinfo(OLD)).startswith("bf16 emulated (")
    assert isa("cpu", "fp32", cpu.parse_cpuinfo(OLD)) == torch.backends.cpu.get_cpu_capability()


def test_report_names_cpu_torch_and_onnxruntime():
    info = cpu.report()
    assert info["cpu"] and isinstance(info["flags"], list)
    assert info["torch"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    result = invoke("info", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["cpu"] == info["cpu"] and shown["bf16_isa"] == info["bf16_isa"]
    text = invoke("info").stdout
    assert info["cpu"] in text and "torch" in text and "auto precision" in text


@pytest.mark.parametrize(
    "task, ref, cand, expected",
    [
        ("classification", [[1.0, 0.0], [0.0, 1.0]], [[0.9, 0.1], [0.6, 0.4]], (0.5, 2)),
        ("multilabel", [[1.0, -1.0]], [[1.0, -1.0]], (1.0, 2)),  # a yes/no per label
        ("regression", [[1.0], [2.0]], [[1.005], [2.5]], (0.5, 2)),  # within 5% of the fp32 spread (1.0)
        ("token-classification", [[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]], (0.5, 2)),
    ],
)
def test_agreement_counts_predictions(task, ref, cand, expected):
    from zoo.tasks import load_task

    ref, cand = [np.asarray(r) for r in ref], [np.asarray(c) for c in cand]
    assert precision.agreement(load_task(task), ref, cand) == expected


@pytest.fixture
def tiny_predictor(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 64, 1))
    assert invoke("build", *TINY, "-o", tmp_path / "m").exit_code == 0
    result = invoke(
        "finetune",
        tmp_path / "m",
        "--train",
        tmp_path / "train.jsonl",
        "-o",
        tmp_path / "ft",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--precision",
        "fp32",
    )
    assert result.exit_code == 0, result.output
    return tmp_path


def _table(n=40):
    return Table("t", [r["text"] for r in synthetic("cls", n, 3)], None, None, list(range(1, n + 1)))


def _dtype(predictor):
    return next(predictor.model.parameters()).dtype


def test_gate_keeps_bf16_when_it_agrees_and_refuses_it_when_it_does_not(tiny_predictor, monkeypatch):
    notes = []
    load = lambda: ModelPredictor(zoo.load_model(tiny_predictor / "ft"))  # noqa: E731
    kept = precision.for_inference(load(), "auto", _table(), note=notes.append, bf16_supported=True)
    monkeypatch.setattr(precision, "agreement", lambda task, a, b: (0.99, len(a)))  # a failing agreement
    refused = precision.for_inference(load(), "auto", _table(), note=notes.append, bf16_supported=True)
    assert refused.precision == "fp32" and _dtype(refused) == torch.float32
    assert notes[-1] == "zoo: precision fp32: bf16 agreed with fp32 on 99.0% of 40 predictions (needs 99.5%)"
    if notes[0].startswith("zoo: precision bf16"):  # the tiny model's own agreement passed the gate
        assert kept.precision == "bf16" and _dtype(kept) == torch.bfloat16
        assert notes[0].endswith("agrees with fp32 on 100.0% of 40 predictions")
    else:
        assert kept.precision == "fp32"


def test_auto_stays_fp32_without_native_bf16_and_bf16_is_honoured(tiny_predictor):
    notes = []
    load = lambda: ModelPredictor(zoo.load_model(tiny_predictor / "ft"))  # noqa: E731
    plain = precision.for_inference(load(), "auto", _table(), note=notes.append, bf16_supported=False)
    assert plain.precision == "fp32" and _dtype(plain) == torch.float32 and "no native bf16" in notes[-1]
    forced = precision.for_inference(load(), "bf16", _table(), note=notes.append, bf16_supported=False)
    assert forced.precision == "bf16" and _dtype(forced) == torch.bfloat16
    assert notes[-1].startswith("zoo: precision bf16 (") and "slower than fp32" in notes[-1]
    assert precision.for_inference(load(), "fp32", _table(), note=notes.append).precision == "fp32"
    export = object()  # an export runs as exported
    assert precision.for_inference(export, "bf16", note=notes.append) is export
    with pytest.raises(zoo.ZooError, match="unknown precision 'bf61'"):
        precision.for_inference(load(), "bf61")


def test_cast_weights_once_and_keep_buffers_fp32():
    model = zoo.build_model(
        "prenorm",
        "cls",
        "sdpa",
        vocab_size=64,
        d_model=16,
        num_layers=1,
        num_heads=2,
        ffn_dim=32,
        max_length=32,
        num_labels=3,
    )
    precision.cast_weights(model)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {b.dtype for b in model.buffers()} == {torch.float32}  # rotary frequencies keep their precision
    with torch.inference_mode():
        out = model(torch.randint(1, 64, (2, 7)), torch.ones(2, 7, dtype=torch.long))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("flag", ["fp32", "bf16"])
def test_finetune_records_the_precision_and_isa(tmp_path, flag):
    write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 48, 1))
    assert invoke("build", *TINY, "-o", tmp_path / "m").exit_code == 0
    result = invoke(
        "finetune",
        tmp_path / "m",
        "--train",
        tmp_path / "train.jsonl",
        "-o",
        tmp_path / "ft",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--precision",
        flag,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "ft" / "config.json").read_text())["extra"]["training"]
    assert record["precision"] == flag and record["isa"] == isa("cpu", flag)
    assert f"zoo: precision {flag} ({record['isa']})" in result.stderr


def test_finetune_auto_is_fp32_on_a_cpu_without_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "detect", lambda: cpu.parse_cpuinfo(OLD))
    write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 48, 1))
    assert invoke("build", *TINY, "-o", tmp_path / "m").exit_code == 0
    result = invoke(
        "finetune",
        tmp_path / "m",
        "--train",
        tmp_path / "train.jsonl",
        "-o",
        tmp_path / "ft",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "ft" / "config.json").read_text())["extra"]["training"]
    assert record["precision"] == "fp32" and record["config"]["precision"] == "auto"


def test_predict_and_evaluate_take_precision(tiny_predictor, monkeypatch):
    d = tiny_predictor
    (d / "dev.csv").write_text(
        "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in synthetic("cls", 30, 2))
    )
    fp32 = invoke("predict", d / "ft", "the cat was good", "it was bad", "--json")
    bf16 = invoke("predict", d / "ft", "the cat was good", "it was bad", "--json", "--precision", "bf16")
    assert fp32.exit_code == bf16.exit_code == 0, bf16.output
    assert fp32.stderr == "" and bf16.stderr.startswith("zoo: precision bf16 (")
    assert len(bf16.stdout.splitlines()) == 2
    monkeypatch.setattr(cpu, "detect", lambda: cpu.parse_cpuinfo(SPR))
    monkeypatch.setattr(precision, "agreement", lambda task, a, b: (0.5, len(a)))
    ev = invoke("evaluate", d / "ft", "--data", d / "dev.csv", "--json", "--precision", "auto")
    assert ev.exit_code == 0, ev.output
    assert (
        ev.stderr == "zoo: precision fp32: bf16 agreed with fp32 on 50.0% of 30 predictions (needs 99.5%)\n"
    )
    assert json.loads(ev.stdout)["n"] == 30
    bad = invoke("predict", d / "ft", "hi", "--precision", "bf61")
    assert bad.exit_code == 2 and "did you mean 'bf16'?" in bad.output
