"""``zoo evaluate``: score a model or export directory on labelled data. An export needs no torch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import data_columns, encoding_option, long_text_options, precision_option, threads_option


@click.command()
@click.argument("model", type=click.Path())
@click.option("--data", type=click.Path(), default=None, help="Labelled data: .csv, .tsv or .jsonl.")
@click.option(
    "--beir",
    "beir",
    type=click.Path(),
    default=None,
    help="An embedding model on a BEIR directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).",
)
@click.option("--split", default="test", show_default=True, help="The qrels split for --beir.")
@data_columns
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print all metrics as JSON.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(),
    default=None,
    help="Also write DIR/report.md and DIR/confusion.png (needs the reports extra).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --report directory.")
@encoding_option
@threads_option
@precision_option
@long_text_options
def evaluate(
    model,
    data,
    beir,
    split,
    text_column,
    label_column,
    pair_column,
    batch_size,
    as_json,
    report_dir,
    overwrite,
    encoding,
    threads,
    precision,
    long_text,
    stride,
):
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix (or the task's own metrics).

    An embedding model takes a pairs file (query,positive: every query ranked against every distinct
    positive), a scored-pairs file (sentence1,sentence2,score: Spearman and Pearson of the cosine), or
    --beir DIR (every judged query ranked against the corpus)."""
    from zoo import windows
    from zoo.errors import ZooError
    from zoo.inference import evaluate_table, load_predictor
    from zoo.io import check_output, staged_directory
    from zoo.precision import for_inference
    from zoo.threads import use

    if (data is None) == (beir is None):
        raise ZooError("give --data FILE, or --beir DIR for an embedding model (not both)")
    if report_dir:  # before any work: an existing report, the model and the data are the user's
        report = Path(report_dir).resolve()
        if any(
            report == p or report in p.parents for p in (Path(model).resolve(), Path(data or beir).resolve())
        ):
            raise ZooError(
                f"--report {report_dir} holds the model or the data; choose a directory of its own"
            )
        check_output(report_dir, overwrite)
    use(threads)
    predictor = load_predictor(model)
    windows.use(predictor, long_text, stride)
    task = predictor.task
    if beir is not None:
        from zoo.embedding import evaluate_beir, require_embeddings

        require_embeddings(predictor, model)
        metrics = evaluate_beir(predictor, beir, split, batch_size=batch_size)
        click.echo(
            json.dumps({"task": task.name, "split": split, **metrics}, indent=2)
            if as_json
            else f"{metrics['queries']} queries, {metrics['documents']} documents from {beir} ({split})\n"
            + task.format_report(metrics)
        )
        return
    table = task.read(
        data, text_column=text_column, label_column=label_column, pair_column=pair_column, encoding=encoding
    )
    predictor = for_inference(
        predictor, precision, table, batch_size=batch_size, note=lambda line: click.echo(line, err=True)
    )
    windows.use(predictor, long_text, stride)
    metrics = evaluate_table(predictor, table, batch_size)
    if report_dir:
        from zoo.reports import write_report

        with staged_directory(report_dir) as work:  # replaces an old report only once the new one is written
            write_report(metrics, work, title=f"{model} on {data}", headline=task.summary_metrics)
    if as_json:
        click.echo(json.dumps({"task": task.name, **metrics}, indent=2, ensure_ascii=False))
    else:
        click.echo(f"{len(table)} examples from {data}")
        click.echo(task.format_report(metrics))
