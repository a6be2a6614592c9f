"""``zoo info``: this machine as zoo sees it: CPU model and ISA flags, what torch and onnxruntime report,
and the precision ``auto`` picks here."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json: bool) -> None:
    """CPU model, bf16/AMX/VNNI flags, torch and onnxruntime versions and kernels, auto precision."""
    from zoo import __version__
    from zoo.cpu import detect, report
    from zoo.device import isa, pick_precision

    data = {"zoo": __version__, **report()}
    cpu = detect()
    if data["torch"] is not None:
        auto = pick_precision("auto", "cpu", cpu.native_bf16)
        data["auto_precision"] = {"finetune": auto, "predict": auto, "isa": isa("cpu", auto, cpu)}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    torch, ort = data["torch"], data["onnxruntime"]
    lines = [
        f"zoo {__version__}, Python {data['python']} ({data['machine']})",
        f"cpu: {cpu.summary()}",
        f"  native bf16: {cpu.bf16_isa or 'none'}; int8 dot products: {cpu.int8_isa or 'none'}",
        "torch: "
        + (
            f"{torch['version']}, kernels {torch['cpu_capability']}, {torch['threads']} thread(s), "
            f"oneDNN {'yes' if torch['mkldnn'] else 'no'}, CUDA {'yes' if torch['cuda'] else 'no'}"
            if torch
            else "not installed"
        ),
        "onnxruntime: "
        + (f"{ort['version']}, providers {', '.join(ort['providers'])}" if ort else "not installed"),
    ]
    if "auto_precision" in data:
        auto = data["auto_precision"]
        gate = "; predict/evaluate --precision auto keep it only where it agrees with fp32 on ≥ 99.5% of rows"
        lines.append(
            f"auto precision on CPU: {auto['finetune']} ({auto['isa']})"
            + (gate if auto["finetune"] == "bf16" else "")
        )
    click.echo("\n".join(lines))
