"""``zoo export``: ONNX and TorchScript exports, parity-checked at shapes the export never saw."""

from __future__ import annotations

import json

import click

from .options import encoding_option, threads_option


@click.command()
@click.argument("model_dir", type=click.Path())
@click.option("--onnx", is_flag=True, help="Write model.onnx (dynamo exporter; TorchScript-based fallback).")
@click.option(
    "--torchscript", is_flag=True, help="Write model.pt (torch.jit.script, or trace when a part cannot)."
)
@click.option(
    "--hf",
    is_flag=True,
    help="Write a directory transformers loads (config.json, model.safetensors, tokenizer, id2label; an "
    "embedding model also for SentenceTransformer, a rerank model for CrossEncoder), checked against zoo's "
    "outputs.",
)
@click.option("--output", "-o", required=True, type=click.Path(), help="Export directory to write.")
@click.option("--opset", type=int, default=None, help="ONNX opset [default: the exporter's].")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Parity: absolute tolerance.")
@click.option("--rtol", type=float, default=1e-3, show_default=True, help="Parity: relative tolerance.")
@click.option("--optimize", is_flag=True, help="Save onnxruntime-optimised graph (BERT fusions) offline.")
@click.option(
    "--quantize",
    default=None,
    metavar="int8",
    help="int8: the fastest method whose predictions agree with fp32 (see --min-agreement); weights "
    "rounded by GPTQ on the calibration text.",
)
@click.option(
    "--calibration-data",
    type=click.Path(),
    default=None,
    help="CSV/TSV/JSONL of texts to calibrate int8 (a third) and check its agreement (the rest); for an "
    "embedding or rerank model, labelled rows (anchor,positive; query,text,label) checked by ndcg@10 "
    "[default: the training (and evaluation) data recorded in the model directory, else generated ids].",
)
@click.option("--text-column", default=None, help="Text column of --calibration-data [default: text].")
@click.option(
    "--min-agreement",
    type=float,
    default=0.99,
    show_default=True,
    help="Least fraction of int8 predictions that must agree with fp32; for an embedding or rerank model, "
    "1 - the largest ndcg@10 drop allowed (0.99: 0.01).",
)
@click.option(
    "--allow-mismatch", is_flag=True, help="Keep an export that fails its checks (recorded, loudly)."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing export directory (only after the checks pass)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@encoding_option
@threads_option
def export(
    model_dir,
    onnx,
    torchscript,
    hf,
    output,
    opset,
    atol,
    rtol,
    optimize,
    quantize,
    calibration_data,
    text_column,
    min_agreement,
    allow_mismatch,
    overwrite,
    as_json,
    encoding,
    threads,
):
    """Export a model directory; exits 1 when an export differs from the eager model."""
    from pathlib import Path

    from zoo.errors import ZooError
    from zoo.export.arguments import CLI_NAMES, check_formats
    from zoo.threads import use

    if Path(output).resolve() == Path(model_dir).resolve():
        raise ZooError("--output must be a new directory, not the model directory itself")
    if hf:
        if onnx or torchscript or optimize or quantize:
            raise ZooError(
                "--hf writes a transformers directory on its own; export ONNX/TorchScript separately"
            )
        return export_hf_dir(model_dir, output, overwrite, as_json, threads)
    check_formats(
        onnx, torchscript, optimize, quantize, CLI_NAMES
    )  # before torch and the model load (seconds)
    if calibration_data and not Path(calibration_data).is_file():
        raise ZooError(f"--calibration-data {calibration_data}: no such file")
    use(threads)  # the parity and int8 checks run torch and onnxruntime
    from zoo.export import export_model
    from zoo.model import load_model

    model = load_model(model_dir)
    manifest = export_model(
        model,
        output,
        onnx=onnx,
        torchscript=torchscript,
        opset=opset,
        atol=atol,
        rtol=rtol,
        optimize=optimize,
        quantize=quantize,
        calibration_data=calibration_data,
        calibration_column=text_column,
        calibration_encoding=encoding,
        allow_mismatch=allow_mismatch,
        min_agreement=min_agreement,
        overwrite=overwrite,
        log=lambda line: click.echo(line, err=True),
        argument_names=CLI_NAMES,
    )
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(f"exported {output}")
    for name, size in manifest["files"].items():
        marker = "  (served)" if name == manifest["serve"] else ""
        click.echo(f"  {name:<22} {size / 1e6:8.2f} MB{marker}")


def export_hf_dir(model_dir: str, output: str, overwrite: bool, as_json: bool, threads) -> None:
    from zoo.hf_export import export_hf
    from zoo.model import load_model
    from zoo.threads import use

    use(threads)
    report = export_hf(load_model(model_dir), output, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"exported {output} ({report['architecture']}, loads with {report['auto_class']}; "
        f"max abs diff {report['max_abs_diff']:.1e})"
    )
