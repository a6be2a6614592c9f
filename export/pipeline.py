"""export_model: ONNX and/or TorchScript, each parity-checked, then optional optimisation and int8.

Everything is written into a hidden temporary directory beside the output and moved into place only
when every check passed (or ``allow_mismatch`` says to keep it anyway), so a failed export never
leaves a model.onnx that looks valid.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo import io
from zoo.constants import (
    INT8_NAME,
    MANIFEST_NAME,
    ONNX_NAME,
    OPTIMIZED_NAME,
    TOKENIZER_NAME,
    TORCHSCRIPT_NAME,
)
from zoo.constants import VERSION as __version__
from zoo.errors import ExportMismatch, ZooError, unknown
from zoo.manager import get_registry
from zoo.registry import MODEL_PARTS

from . import parity
from .arguments import PYTHON_NAMES, check_formats
from .held_out import held_out
from .onnx_export import EXPORTERS, ExportFailed, export_onnx
from .runtime import session_options

MANIFEST_VERSION = 1
QUANTIZE_CHOICES = ("int8",)
FORMAT_NAMES = {"onnx": "ONNX", "torchscript": "TorchScript"}


def export_model(
    model,
    output_dir,
    *,
    onnx: bool = True,
    torchscript: bool = False,
    opset: int | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    optimize: bool = False,
    quantize: str | None = None,
    calibration_texts: Sequence[str] | None = None,
    calibration_data: str | Path | None = None,
    calibration_column: str | None = None,
    calibration_encoding: str | None = None,
    allow_mismatch: bool = False,
    min_agreement: float = 0.99,
    overwrite: bool = False,
    int8_methods: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    argument_names: Mapping[str, str] = PYTHON_NAMES,
) -> dict[str, Any]:
    """Export ``model`` (a ZooModel) to ``output_dir`` and return the manifest.

    Raises ExportMismatch (exit code 1) when an export differs from the eager model beyond
    ``atol + rtol·|eager|`` on a probe shape, or int8 agrees with fp32 on fewer than ``min_agreement``
    of the predictions; ``allow_mismatch`` keeps the files anyway and records the failure.
    ``calibration_data``: a file to calibrate and check int8 on, instead of ``calibration_texts``: an embedding
    or rerank model reads it as labelled rows (pairs; query,text,label) and is judged by ndcg@10 against
    fp32 (export/held_out.py), other models read its texts (``calibration_column``, ``calibration_encoding``).
    ``int8_methods``: the int8 methods to try, in order (default: export.quantize.DEFAULT_METHODS).
    ``argument_names``: how messages name the arguments (the keywords here; `zoo export` passes its flags).
    """
    names = argument_names
    log = log or (lambda message: None)
    formats = [f for f, wanted in (("onnx", onnx), ("torchscript", torchscript)) if wanted]
    _check_arguments(formats, opset, atol, rtol, optimize, quantize, min_agreement, names)
    if getattr(model, "adapter", None) is not None:  # an adapter directory exports as its merged model
        model = model.merged()
    output = Path(output_dir)
    io.check_output(output, overwrite)
    parts = check_capabilities(model, formats)
    if calibration_data is not None and not getattr(model.task, "single_texts", True):
        try:  # before any export work: this model's inputs are pairs, and so must its calibration data be
            model.task.read(calibration_data, encoding=calibration_encoding)
        except ZooError as exc:
            raise ZooError(
                f"{names['calibration']}: a {model.task.name} model calibrates int8 on its own rows "
                f"(text pairs), not single texts: {exc}"
            ) from None
    if (calibration_texts is not None or calibration_data is not None) and getattr(
        model, "tokenizer", None
    ) is None:
        raise ZooError("calibration data needs a model with a tokenizer; this model has none")

    source = _cpu_float32(model)
    was_training = source.training
    source.eval()
    sizes, tokenizer = model.spec.sizes, getattr(model, "tokenizer", None)
    pad = _pad_id(tokenizer)
    example = tuple(
        torch.from_numpy(a) for a in parity.trace_inputs(sizes["vocab_size"], sizes["max_length"], pad)
    )
    eager = eager_runner(source)
    references = [
        (p, eager(p.input_ids, p.attention_mask))
        for p in parity.probes(sizes["vocab_size"], sizes["max_length"], pad)
    ]
    manifest: dict[str, Any] = {
        "format": "zoo-export",
        "format_version": MANIFEST_VERSION,
        "zoo_version": __version__,
        "model": {k: getattr(model.spec, k).ref for k in MODEL_PARTS},
        "head_options": model.spec.head.options,
        "labels": model.spec.labels,
        "num_labels": sizes["num_labels"],
        "task": model.task.name,
        "outputs": list(model.task.output_names),
        # max_length: where text is cut (as for the torch model); max_positions: the longest the graph takes
        "max_length": int(model.spec.tokenizer.get("max_length") or sizes["max_length"]),
        "max_positions": sizes["max_length"],
        "vocab_size": sizes["vocab_size"],
        "pad_id": pad,
        "tokenizer_settings": model.spec.tokenizer,
        "tolerance": {"atol": atol, "rtol": rtol},
        "trace_shape": list(example[0].shape),
        "serve": None,
    }
    failures: list[str] = []
    try:  # built in a hidden directory that replaces the output only after every check (io.staged_directory)
        with io.staged_directory(output) as work:
            if onnx:
                manifest["onnx"] = _onnx(
                    source,
                    example,
                    work,
                    opset,
                    sizes["max_length"],
                    references,
                    atol,
                    rtol,
                    tuple(model.task.output_names),
                )
                _note(manifest["onnx"], "ONNX", failures, log)
                manifest["serve"] = ONNX_NAME
            if torchscript:
                manifest["torchscript"] = _torchscript(source, example, work, references, atol, rtol, parts)
                _note(manifest["torchscript"], "TorchScript", failures, log)
            if optimize:
                manifest["optimized"] = _optimize(work, references, atol, rtol, sizes)
                _note(manifest["optimized"], "optimised ONNX", failures, log)
                if manifest["optimized"]["parity"]["passed"]:
                    manifest["serve"] = OPTIMIZED_NAME
            if quantize:
                base = work / manifest["serve"]
                data = held_out(
                    model,
                    tokenizer,
                    calibration_texts,
                    sizes,
                    pad,
                    calibration_data,
                    text_column=calibration_column,
                    encoding=calibration_encoding,
                )
                manifest["int8"] = _int8(
                    base,
                    work / INT8_NAME,
                    data.check,
                    model.task,
                    min_agreement,
                    calibration=data.calibration,
                    trained=_head_trained(model),
                    targets=data.targets,
                    **({"methods": tuple(int8_methods)} if int8_methods else {}),
                )
                manifest["int8"]["texts"] = data.source
                if "ndcg@10_drop" in manifest["int8"]["measures"]:  # a retrieval model: agreement = 1 - drop
                    manifest["int8"]["max_ndcg_drop"] = round(1 - min_agreement, 12)
                _note_int8(manifest["int8"], failures, log, names)
                if manifest["int8"]["passed"]:
                    manifest["serve"] = INT8_NAME
            for section, what in (("onnx", "ONNX"), ("optimized", "optimised ONNX")):
                if section in manifest:  # after int8, which quantises the graph as exported
                    manifest[section].update(
                        _plain_form(work / manifest[section]["file"], references, atol, rtol)
                    )
                    if manifest[section]["layer_norm_sums"] and not manifest[section]["parity"]["passed"]:
                        _note(manifest[section], what, failures, log)
            if tokenizer is not None:
                io.write_text(work / TOKENIZER_NAME, tokenizer.to_str())
            manifest["parity_passed"] = not failures
            manifest["allow_mismatch"] = allow_mismatch
            manifest["files"] = {
                f.name: f.stat().st_size for f in sorted(work.iterdir()) if not f.name.startswith(".")
            }
            io.write_json(work / MANIFEST_NAME, manifest)
            if failures and not allow_mismatch:
                raise ExportMismatch(
                    f"{failures[0]}; nothing was written ({names['allow_mismatch']} keeps it anyway)"
                )
            for stray in work.glob(".*"):
                stray.unlink()
    finally:
        source.train(was_training)
    if failures:
        log(
            f"WARNING: kept an export that FAILED its checks ({names['allow_mismatch']}): {'; '.join(failures)}"
        )
    return manifest


def check_capabilities(model, formats: list[str]) -> dict[str, Any]:
    """The model's registered parts; a part that declares it cannot export stops here, in one line."""
    registry = get_registry()
    parts = {}
    for kind in MODEL_PARTS:
        choice = getattr(model.spec, kind)
        part = registry.resolve(kind, choice.ref)
        for fmt in formats:
            if part.capabilities.get(fmt) is False:
                raise ZooError(
                    f"{kind} '{part.name}' (plugin '{part.plugin}') declares that it cannot be "
                    f"exported to {FORMAT_NAMES[fmt]} (capability {fmt}=False)"
                )
        parts[kind] = part
    return parts


def eager_runner(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).float().numpy()

    return run


def ort_runner(path: Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The graph's first output (the task's first output name), as the eager model's forward returns it."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(path), session_options(spinning=False), providers=["CPUExecutionProvider"]
    )
    first = session.get_outputs()[0].name
    return lambda ids, mask: session.run([first], {"input_ids": ids, "attention_mask": mask})[0]


def _onnx(
    source, example, work: Path, opset, max_length: int, references, atol, rtol, outputs: tuple[str, ...]
) -> dict[str, Any]:
    """The dynamo exporter first; the TorchScript-based one when dynamo raises or misses parity."""
    attempts, produced = [], []
    for exporter in EXPORTERS:
        path = work / f".{exporter}.onnx"
        try:
            graph_opset = export_onnx(
                source, example, path, exporter=exporter, opset=opset, max_length=max_length, outputs=outputs
            )
        except ExportFailed as exc:
            attempts.append({"exporter": exporter, "error": str(exc)})
            continue
        report = parity.check(ort_runner(path), references, atol, rtol)
        attempts.append({"exporter": exporter, "parity_passed": report["passed"]})
        produced.append((exporter, path, graph_opset, report))
        if report["passed"]:
            break
    if not produced:
        raise ZooError("ONNX export failed: " + "; ".join(a["error"] for a in attempts))
    exporter, path, graph_opset, report = next((p for p in produced if p[3]["passed"]), produced[0])
    path.replace(work / ONNX_NAME)
    return {
        "file": ONNX_NAME,
        "exporter": exporter,
        "opset": graph_opset,
        "bytes": (work / ONNX_NAME).stat().st_size,
        "attempts": attempts,
        "parity": report,
    }


def _torchscript(source, example, work: Path, references, atol, rtol, parts) -> dict[str, Any]:
    from .torchscript import export_torchscript, load_runner

    path = work / TORCHSCRIPT_NAME
    try:
        info = export_torchscript(source, example, path, parts)
    except Exception as exc:
        raise ZooError(
            f"TorchScript export failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        ) from exc
    report = parity.check(load_runner(path), references, atol, rtol)
    return {"file": TORCHSCRIPT_NAME, **info, "bytes": path.stat().st_size, "parity": report}


def _optimize(work: Path, references, atol, rtol, sizes) -> dict[str, Any]:
    """BERT fusions first, plain onnxruntime optimisations when the fused graph misses parity."""
    from .optimize import METHODS, optimize

    attempts, report, info = [], None, {}
    target = work / OPTIMIZED_NAME
    for method in METHODS:
        try:
            info = optimize(
                work / ONNX_NAME, target, method, num_heads=sizes["num_heads"], d_model=sizes["d_model"]
            )
        except Exception as exc:
            attempts.append({"method": method, "error": f"{type(exc).__name__}: {exc}"})
            continue
        report = parity.check(ort_runner(target), references, atol, rtol)
        attempts.append({"method": method, "parity_passed": report["passed"]})
        if report["passed"]:
            break
    if report is None:
        raise ZooError("ONNX optimisation failed: " + "; ".join(a["error"] for a in attempts))
    return {
        "file": OPTIMIZED_NAME,
        **info,
        "bytes": target.stat().st_size,
        "attempts": attempts,
        "parity": report,
    }


def _plain_form(path: Path, references, atol, rtol) -> dict[str, Any]:
    """Rewrite the file so a session with default options runs it as fast as zoo's own (plain.py), and check
    parity again on the rewritten file."""
    from .plain import guard_layer_norm_adds

    sums = guard_layer_norm_adds(path)
    checked = {"parity": parity.check(ort_runner(path), references, atol, rtol)} if sums else {}
    return {"layer_norm_sums": sums, "session_options": {}, "bytes": path.stat().st_size, **checked}


def _int8(base: Path, target: Path, batches, task, min_agreement: float, **options) -> dict[str, Any]:
    from .quantize import best_int8

    report = best_int8(base, target, ort_runner(base), ort_runner, batches, task, min_agreement, **options)
    return {**report, "quantized_from": base.name}


def _head_trained(model) -> bool:
    """Whether the head's outputs mean something: training is recorded, or every head tensor came from the
    imported checkpoint (a sentence-transformers model's pooling, a CrossEncoder's classifier); a fresh
    classifier on an imported encoder is not."""
    if "training" in model.spec.extra:
        return True
    imported = set((model.spec.extra.get("source") or {}).get("imported") or [])
    names = {".".join(f"head.{name}".split(".")[:2]) for name, _ in model.head.named_parameters()}
    return "source" in model.spec.extra and names <= imported


def _note(section: dict[str, Any], what: str, failures: list[str], log) -> None:
    report = section["parity"]
    if report["passed"]:
        worst = max((s["max_abs_diff"] for s in report["shapes"]), default=0.0)
        how = section.get("exporter") or section.get("method")
        log(f"{what}: {how}, parity ok on {len(report['shapes'])} shapes (max abs diff {worst:.2g})")
    else:
        failures.append(
            f"{what} export differs from the eager model beyond atol={report['atol']:g}, "
            f"rtol={report['rtol']:g}: {parity.worst(report)}"
        )
    if section.get("script_error"):  # TorchScript fell back to tracing: which part and why, in one line
        log(f"{what}: traced, not scripted: {section['script_error']}")


def _note_int8(section: dict[str, Any], failures: list[str], log, names: Mapping[str, str]) -> None:
    kept = f", {len(section['fp32_nodes'])} nodes kept fp32" if section["fp32_nodes"] else ""
    summary = (
        f"int8 ({section['method']}{kept}): predictions agree with fp32 on {section['agreement']:.2%} of "
        f"{section['compared']} ({section['rule']}), logit error {section['logit_error']:.1%} of their spread"
        + (f"; {section['measures']['detail']}" if "detail" in section.get("measures", {}) else "")
    )
    if section["measure"] == "logit_error":
        log(
            "int8: the head is untrained (no training recorded), so its near-tie predictions say little; "
            "kept without the agreement check, judge it by the logit error"
        )
    if section["passed"]:
        log(f"{summary}; {section['size_ratio']:.0%} of the fp32 size")
    else:
        failures.append(
            f"{summary}: no method reaches the required {section['min_agreement']:.0%} "
            f"({names['min_agreement']}), even with nodes kept fp32"
        )


def _check_arguments(formats, opset, atol, rtol, optimize, quantize, min_agreement, names) -> None:
    check_formats("onnx" in formats, "torchscript" in formats, optimize, quantize, names)
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise unknown("quantisation", quantize, QUANTIZE_CHOICES)
    if opset is not None and not 7 <= opset <= 23:
        raise ZooError(f"{names['opset']} must be between 7 and 23, got {opset}")
    if atol < 0 or rtol < 0:
        raise ZooError(f"tolerances must be >= 0, got atol={atol}, rtol={rtol}")
    if not 0 <= min_agreement <= 1:
        raise ZooError(f"{names['min_agreement']} must be in [0, 1], got {min_agreement}")


def _pad_id(tokenizer) -> int:
    if tokenizer is None:
        return 0
    from zoo.tokenizer import pad_id

    return pad_id(tokenizer)


def _cpu_float32(model):
    """The model itself when it is on the CPU in float32; otherwise a CPU float32 copy (exports are CPU)."""
    params = list(model.parameters())
    if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
        return model
    tokenizer, model.tokenizer = getattr(model, "tokenizer", None), None
    try:
        clone = copy.deepcopy(model).to("cpu", torch.float32)
    finally:
        model.tokenizer = tokenizer
    clone.tokenizer = tokenizer
    return clone
