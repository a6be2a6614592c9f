"""``zoo demo``: the main job end to end on a real pretrained checkpoint and real tweets."""

from __future__ import annotations

import json

import click

from .options import threads_option


@click.command()
@click.option(
    "--output",
    "-o",
    default="zoo-demo",
    show_default=True,
    type=click.Path(),
    help="Directory for the data splits, the model, the exports and the report.",
)
@click.option(
    "--samples",
    default=3000,
    show_default=True,
    type=click.IntRange(min=30),
    help="Tweets to use (80% train, 10% eval, 10% test).",
)
@click.option("--epochs", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@threads_option
def demo(output, samples, epochs, seed, overwrite, as_json, threads):
    """Import MiniLM, fine-tune on real tweets, evaluate, export ONNX fp32 + int8, serve, summarise."""
    from zoo.demo import run_demo
    from zoo.threads import use

    use(threads)
    log = (lambda message: click.echo(message, err=True)) if as_json else click.echo
    summary = run_demo(
        output, samples=samples, epochs=epochs, seed=seed, overwrite=overwrite, log=log, threads=threads
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    t, q, lat, size = summary["test"], summary["test_int8"], summary["latency_ms"], summary["sizes_mb"]
    parity, int8 = summary["parity_fp32"], summary["int8"]
    verdict = (
        f"{int8['method']}: int8 is served"
        if int8["passed"]
        else f"below the {int8['min_agreement']:.0%} bar: fp32 is served"
    )
    click.echo("")
    click.echo(
        f"zoo demo: all-MiniLM-L6-v2 fine-tuned on {summary['train_rows']} real tweets "
        f"in {summary['train_seconds']:.0f} s"
    )
    click.echo(
        f"  {'test (n=' + str(t['n']) + ')':<20}accuracy {t['accuracy']:.3f}   macro-F1 {t['macro_f1']:.3f}   (torch)"
    )
    click.echo(f"  test, ONNX int8     accuracy {q['accuracy']:.3f}   macro-F1 {q['macro_f1']:.3f}")
    click.echo(
        f"  ONNX fp32 parity    max abs diff {parity['max_abs']:.1e}, max rel {parity['max_rel']:.1e} "
        f"on {len(parity['shapes'])} unseen shapes {parity['shapes']}"
    )
    click.echo(
        f"  int8 agreement      {int8['agreement']:.1%} of {int8['compared']} predictions match fp32 ({verdict})"
    )
    click.echo(
        f"  latency, one text   torch {lat['torch']:.1f} ms   ONNX fp32 {lat['onnx_fp32']:.1f} ms   "
        f"ONNX int8 {lat['onnx_int8']:.1f} ms   (median, tokenising included)"
    )
    click.echo(
        f"  file size           ONNX fp32 {size['onnx_fp32']:.1f} MB   ONNX int8 {size['onnx_int8']:.1f} MB "
        f"({int8['size_ratio']:.0%})"
    )
    click.echo(f"  predictions (onnxruntime, {summary['served']}, the file zoo predict serves):")
    for row in summary["predictions"]:
        click.echo(f"    {row['label']:<9} {row['probability']:.2f}  {row['text']}")
    if summary["report"]:
        click.echo(f"  report              {summary['report']} (+ confusion.png, curves.png)")
    click.echo(f'  next                zoo predict {summary["output"]}/export "your text here"')
