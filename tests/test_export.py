"""zoo export: failing parity exits 1 and leaves nothing, capabilities, overwrite, optimisation, probes."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from script_fixtures import FinfoMaxHead
from torch import nn

from zoo import hookimpl
from zoo.cli import cli
from zoo.errors import ExportMismatch, ZooError
from zoo.export import export_model, parity
from zoo.model import build_model, load_model

TINY = dict(d_model=16, num_layers=1, num_heads=2, vocab_size=40, max_length=32, dropout=0.0)


class ExportShy(nn.Module):
    """An attention whose forward changes while an exporter traces it: the failure parity exists for."""

    def __init__(self, *, d_model, num_heads, dropout):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, mask=None):
        out = self.proj(x)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            out = out * 2.0
        return out


class TestPlugin:
    @hookimpl
    def register_heads(self, register):
        register("finfo-head", FinfoMaxHead, task="classification")
        register("trace-head", FinfoMaxHead, task="classification", capabilities={"torchscript": "trace"})

    @hookimpl
    def register_attention(self, register):
        register("export-shy", ExportShy, description="differs under export")
        register(
            "no-onnx",
            "zoo.plugins.attention.sdpa:SDPAttention",
            capabilities={"onnx": False},
            description="declares it cannot export to ONNX",
        )


@pytest.fixture
def plugin(inline_plugin):
    return inline_plugin(TestPlugin(), "test-export")


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_failing_parity_exits_1_and_leaves_no_model(plugin, tmp_path):
    build_model("transformer", "cls", "export-shy", seed=0, **TINY).save(tmp_path / "model")
    result = _run("export", tmp_path / "model", "--onnx", "--torchscript", "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "error: ONNX export differs from the eager model beyond atol=0.0001, rtol=0.001: max abs diff "
    )
    assert line.endswith("; nothing was written (--allow-mismatch keeps it anyway)")
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no out/, no hidden partial dir
    with pytest.raises(ExportMismatch, match=r"nothing was written \(allow_mismatch=True keeps it anyway\)$"):
        export_model(load_model(tmp_path / "model"), tmp_path / "py", onnx=True)


def test_allow_mismatch_keeps_the_export_and_records_the_failure(plugin, tmp_path, capsys):
    from zoo.export.runtime import OnnxModel

    model = build_model("transformer", "cls", "export-shy", seed=0, **TINY)
    manifest = export_model(model, tmp_path / "out", allow_mismatch=True)
    assert manifest["parity_passed"] is False and manifest["onnx"]["parity"]["passed"] is False
    # dynamo first, then the TorchScript-based fallback; both differ, so dynamo's result is kept
    assert [a["exporter"] for a in manifest["onnx"]["attempts"]] == ["dynamo", "torchscript"]
    assert manifest["onnx"]["exporter"] == "dynamo"
    diffs = [s["max_abs_diff"] for s in manifest["onnx"]["parity"]["shapes"]]
    assert all(d > 0.01 for d in diffs)
    OnnxModel(tmp_path / "out")
    assert "exported with --allow-mismatch" in capsys.readouterr().err


def test_a_runtime_that_drifts_on_long_padded_batches_fails_there(monkeypatch, tmp_path):
    """Correct graph, wrong runtime (monkeypatched): only the batch-4 padded probe drifts, by 1e-3."""
    from zoo.export import pipeline

    real = pipeline.ort_runner

    def drifting(path):
        run = real(path)
        return lambda ids, mask: run(ids, mask) + (1e-3 if ids.shape[0] == 4 else 0.0)

    monkeypatch.setattr(pipeline, "ort_runner", drifting)
    model = build_model("transformer", "cls", "sdpa", seed=0, **TINY)
    with pytest.raises(ExportMismatch, match=r"max abs diff 0\.001 at batch 4 x 32 \(batch4-long-padded\)"):
        export_model(model, tmp_path / "out", atol=1e-4, rtol=0.0)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_part_that_cannot_export_says_so_in_one_line(plugin, tmp_path):
    build_model("transformer", "cls", "no-onnx", seed=0, **TINY).save(tmp_path / "model")
    result = _run("export", tmp_path / "model", "--onnx", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: attention 'no-onnx' (plugin 'test-export') declares that it cannot be "
        "exported to ONNX (capability onnx=False)\n"
    )
    # TorchScript is not declared impossible, so that export goes ahead
    result = _run("export", tmp_path / "model", "--torchscript", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "model.pt"]


def test_overwrite_replaces_an_export_only_after_the_new_one_passes(plugin, tmp_path):
    build_model("transformer", "cls", "sdpa", seed=0, **TINY).save(tmp_path / "good")
    build_model("transformer", "cls", "export-shy", seed=0, **TINY).save(tmp_path / "bad")
    assert _run("export", tmp_path / "good", "--onnx", "-o", tmp_path / "out").exit_code == 0
    before = (tmp_path / "out" / "model.onnx").read_bytes()
    result = _run("export", tmp_path / "good", "--onnx", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "pass --overwrite to replace it" in result.stderr
    result = _run("export", tmp_path / "good", "--onnx", "--overwrite", "-o", tmp_path / "good")
    assert result.stderr == "error: --output must be a new directory, not the model directory itself\n"
    assert _run("export", tmp_path / "bad", "--onnx", "--overwrite", "-o", tmp_path / "out").exit_code == 1
    assert (tmp_path / "out" / "model.onnx").read_bytes() == before  # the old export survived
    result = _run(
        "export", tmp_path / "good", "--onnx", "--torchscript", "--overwrite", "-o", tmp_path / "out"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "model.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "out"]


def test_manifest_and_onnx_contract(tmp_path):
    import onnx

    model = build_model("bert", "token-cls", "mha", labels=["O", "B", "I"], seed=0, **TINY)
    model.spec.tokenizer["max_length"] = 16  # text is cut at 16 tokens though the graph takes 32
    result = _run_export(model, tmp_path, "--json")
    manifest = json.loads(result.stdout)
    assert manifest["labels"] == ["O", "B", "I"] and manifest["task"] == "token-classification"
    assert (manifest["max_length"], manifest["max_positions"]) == (16, 32)
    assert manifest["serve"] == "model.onnx"
    assert manifest["onnx"]["exporter"] == "dynamo" and manifest["onnx"]["opset"] >= 18
    graph = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    for tensor in graph.graph.input:
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in tensor.type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert manifest["files"]["model.onnx"] == (tmp_path / "out" / "model.onnx").stat().st_size
    # a weight's shape lives in the weight: a second record of it goes stale when a tool rewrites the weight
    # (onnxruntime 1.30's quantiser transposes Gemm weights, then fails shape inference on the old entry)
    weights = {i.name for i in graph.graph.initializer}
    assert weights and not weights & {v.name for v in graph.graph.value_info}


def test_library_prints_stay_off_stdout_while_exporting(capsys):
    from zoo.export.onnx_export import quiet

    with quiet():
        print("failed in shape inference")  # what onnxruntime 1.30's optimiser prints
    assert capsys.readouterr().out == ""  # `zoo export --json` keeps stdout for the manifest


def test_every_fp32_file_is_fast_in_a_session_with_default_options(tmp_path):
    """A plain onnxruntime session (no zoo options) must not fuse SkipLayerNormalization, whose CPU kernel is
    slower than Add + LayerNorm: the residual adds are written as Sum, and the outputs are unchanged."""
    model = build_model("bert", "cls", "sdpa", seed=0, **TINY)
    manifest = json.loads(_run_export(model, tmp_path, "--optimize", "--json").stdout)
    ids, mask = parity.probes(40, 32, seed=5)[-1].input_ids, parity.probes(40, 32, seed=5)[-1].attention_mask
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    for section in ("onnx", "optimized"):
        info = manifest[section]
        assert info["session_options"] == {} and info["layer_norm_sums"] >= 2 and info["parity"]["passed"]
        options = ort.SessionOptions()  # defaults, except where onnxruntime writes the graph it runs
        options.optimized_model_filepath = str(tmp_path / f"{section}.session.onnx")
        session = ort.InferenceSession(
            str(tmp_path / "out" / info["file"]), options, providers=["CPUExecutionProvider"]
        )
        ran = {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
        assert "SkipLayerNormalization" not in ran and "Sum" in ran
        got = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_optimize_fuses_bert_ops_and_keeps_parity(tmp_path):
    model = build_model("bert", "cls", "sdpa", seed=0, **TINY)
    manifest = json.loads(_run_export(model, tmp_path, "--optimize", "--json").stdout)
    optimized = manifest["optimized"]
    assert optimized["method"] == "transformers-fusion" and optimized["parity"]["passed"]
    assert optimized["fused_ops"].get("BiasGelu", 0) >= 1
    assert "SkipLayerNormalization" not in optimized["fused_ops"]  # slower on CPU than Add + LayerNorm
    assert manifest["serve"] == "model.optimized.onnx"
    ids, mask = parity.probes(40, 32, seed=5)[-1].input_ids, parity.probes(40, 32, seed=5)[-1].attention_mask
    session = ort.InferenceSession(
        str(tmp_path / "out" / "model.optimized.onnx"), providers=["CPUExecutionProvider"]
    )
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(
        session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0], expected, atol=1e-4, rtol=0
    )


def _run_export(model, tmp_path, *extra):
    model.save(tmp_path / "model")
    result = _run("export", tmp_path / "model", "--onnx", "-o", tmp_path / "out", *extra)
    assert result.exit_code == 0, result.output
    return result


def test_probes_differ_from_the_traced_shape_and_cover_padding():
    trace = parity.trace_lengths(512)
    probes = parity.probes(100, 512)
    shapes = [p.input_ids.shape for p in probes]
    assert trace not in shapes and {1, 3, 4} == {s[0] for s in shapes}
    assert min(s[1] for s in shapes) < trace[1] < max(s[1] for s in shapes)
    lengths = probes[-1].attention_mask.sum(axis=1)
    assert sorted(lengths) == [1, 32, 63, 64]  # rows down to a single real token
    assert all((p.input_ids[p.attention_mask == 0] == 0).all() for p in probes)


def test_compare_uses_allclose_rule_and_ignores_near_zero_for_rel():
    reference = np.array([[1.0, -2.0, 0.0]])
    report = parity.compare(reference + [[1e-4, 0, 5e-5]], reference, atol=1e-4, rtol=0)
    assert report["ok"] and report["max_abs_diff"] == pytest.approx(1e-4)
    assert report["max_rel_diff"] == pytest.approx(1e-4)  # |0| entry left out of the relative diff
    assert not parity.compare(reference + [[0, 3e-3, 0]], reference, atol=1e-4, rtol=1e-3)["ok"]
    assert parity.compare(reference + [[0, 1.9e-3, 0]], reference, atol=1e-4, rtol=1e-3)["ok"]
    assert parity.compare(reference[:, :2], reference, 1, 1)["error"] == "shape [1, 2], expected [1, 3]"
    assert parity.compare(reference * np.nan, reference, 1, 1)["error"] == "non-finite values differ"


def test_bad_arguments_are_one_line_errors(tmp_path):
    model = build_model("transformer", "cls", "sdpa", seed=0, **TINY)
    with pytest.raises(ZooError, match=r"^unknown quantisation 'int4'; did you mean 'int8'\? choices: int8$"):
        export_model(model, tmp_path / "a", quantize="int4")
    # the Python API names its own arguments, not the CLI's flags (tests/test_usability.py checks the flags)
    with pytest.raises(
        ZooError, match=r"^optimize=True and quantize= work on the ONNX graph; add onnx=True$"
    ):
        export_model(model, tmp_path / "a", onnx=False, torchscript=True, optimize=True)
    with pytest.raises(ZooError, match=r"^min_agreement must be in \[0, 1\], got 2$"):
        export_model(model, tmp_path / "a", min_agreement=2)
    with pytest.raises(
        ZooError, match=r"^calibration data needs a model with a tokenizer; this model has none$"
    ):
        export_model(model, tmp_path / "a", quantize="int8", calibration_texts=["a b"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ZooError, match=r"file exists and is not a directory$"):
        export_model(model, tmp_path / "file")


def test_dynamo_failure_falls_back_to_the_torchscript_exporter_and_says_so(monkeypatch, tmp_path):
    from zoo.export import onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("Could not guard on data-dependent expression\nmore detail")

    monkeypatch.setattr(onnx_export, "export_dynamo", broken)
    manifest = export_model(build_model("bert", "cls", "sdpa", seed=0, **TINY), tmp_path / "out")
    assert manifest["onnx"]["exporter"] == "torchscript" and manifest["onnx"]["opset"] == 17
    assert manifest["onnx"]["attempts"] == [
        {
            "exporter": "dynamo",
            "error": "dynamo exporter failed: RuntimeError: Could not guard on data-dependent expression",
        },
        {"exporter": "torchscript", "parity_passed": True},
    ]
    assert manifest["onnx"]["parity"]["passed"]


def test_when_every_exporter_fails_the_error_names_each(monkeypatch, tmp_path):
    from zoo.export import onnx_export

    def broken(name):
        def fail(*args, **kwargs):
            raise NotImplementedError(f"{name} cannot do aten::weird")

        return fail

    monkeypatch.setattr(onnx_export, "export_dynamo", broken("dynamo"))
    monkeypatch.setattr(onnx_export, "export_torchscript_based", broken("legacy"))
    with pytest.raises(
        ZooError,
        match=r"^ONNX export failed: dynamo exporter failed: NotImplementedError: dynamo "
        r"cannot do aten::weird; torchscript exporter failed: NotImplementedError: "
        r"legacy cannot do aten::weird$",
    ):
        export_model(build_model("transformer", "cls", "sdpa", seed=0, **TINY), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_fused_graph_that_misses_parity_falls_back_to_plain_onnxruntime_optimisation(monkeypatch, tmp_path):
    import onnx
    from onnx import numpy_helper

    from zoo.export import optimize as optimize_module

    real = optimize_module.optimize

    def wrong_fusion(source, target, method, **sizes):
        info = real(source, target, method, **sizes)
        if method == "transformers-fusion":  # a fusion that silently changed the maths
            graph = onnx.load(str(target))
            bias = next(t for t in graph.graph.initializer if t.name == "head.classifier.bias")
            bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.5, bias.name))
            onnx.save(graph, str(target))
        return info

    monkeypatch.setattr(optimize_module, "optimize", wrong_fusion)
    manifest = export_model(
        build_model("bert", "cls", "sdpa", seed=0, **TINY), tmp_path / "out", optimize=True
    )
    optimized = manifest["optimized"]
    assert optimized["attempts"] == [
        {"method": "transformers-fusion", "parity_passed": False},
        {"method": "onnxruntime-extended", "parity_passed": True},
    ]
    assert optimized["method"] == "onnxruntime-extended" and optimized["parity"]["passed"]
    assert manifest["serve"] == "model.optimized.onnx"


def test_torchscript_export_of_builtin_parts_is_scripted_and_says_so(tmp_path):
    build_model("bert", "cls", "alibi", seed=0, **TINY).save(tmp_path / "model")
    result = _run("export", tmp_path / "model", "--torchscript", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "TorchScript: script, parity ok on 3 shapes" in result.stderr and "traced" not in result.stderr
    section = json.loads((tmp_path / "out" / "manifest.json").read_text())["torchscript"]
    assert section["method"] == "script" and "script_error" not in section and section["parity"]["passed"]


def test_torchscript_fallback_prints_the_part_and_the_reason_in_one_line(plugin, tmp_path):
    build_model("transformer", "finfo-head", seed=0, **TINY).save(tmp_path / "model")
    result = _run("export", tmp_path / "model", "--torchscript", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("TorchScript: trace, parity ok on 3 shapes")
    assert re.fullmatch(
        r"TorchScript: traced, not scripted: head 'finfo-head' \(plugin 'test-export'\) does not "
        r"script: RuntimeError: Unknown builtin op: aten::finfo at \S*script_fixtures\.py:\d+ "
        r"`hidden = hidden\.masked_fill\(~mask\[\.\.\., None\], torch\.finfo\(hidden\.dtype\)\.min\)`",
        lines[1],
    ), lines[1]
    section = json.loads((tmp_path / "out" / "manifest.json").read_text())["torchscript"]
    assert section["method"] == "trace" and section["script_error"] == lines[1].split("not scripted: ", 1)[1]
    assert section["parity"]["passed"]


def test_torchscript_export_traces_a_part_that_declares_it(plugin, tmp_path):
    manifest = export_model(
        build_model("transformer", "trace-head", seed=0, **TINY),
        tmp_path / "out",
        onnx=False,
        torchscript=True,
    )
    assert manifest["torchscript"]["method"] == "trace"
    assert manifest["torchscript"]["script_error"] == (
        "head 'trace-head' (plugin 'test-export') declares capability torchscript='trace'"
    )
