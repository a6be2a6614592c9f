"""``zoo evaluate``: score a model or export directory on labelled data. An export needs no torch."""
from __future__ import annotations

import json

import click

from .finetune import data_columns
from .options import precision_option


@click.command()
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Labelled data: .csv, .tsv or .jsonl.")
@data_columns
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print all metrics as JSON.")
@click.option("--report", "report_dir", type=click.Path(), default=None,
              help="Also write DIR/report.md and DIR/confusion.png (needs the reports extra).")
@precision_option
def evaluate(model, data, text_column, label_column, pair_column, batch_size, as_json, report_dir, precision):
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix (or the task's own metrics)."""
    from zoo.data import read_table
    from zoo.inference import evaluate_table, load_predictor
    from zoo.metrics import format_report
    from zoo.precision import for_inference

    predictor = load_predictor(model)
    table = read_table(data, text_column=text_column, label_column=label_column, pair_column=pair_column)
    predictor = for_inference(predictor, precision, table, batch_size=batch_size,
                              note=lambda line: click.echo(line, err=True))
    metrics = evaluate_table(predictor, table, batch_size)
    if report_dir:
        from zoo.reports import write_report

        write_report(predictor.task, metrics, report_dir, title=f"{model} on {data}")
    if as_json:
        click.echo(json.dumps({"task": predictor.task, **metrics}, indent=2, ensure_ascii=False))
    else:
        click.echo(f"{len(table)} examples from {data}")
        click.echo(format_report(predictor.task, metrics))
