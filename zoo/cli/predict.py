"""``zoo predict``: labels for texts given as arguments or in a file. An export directory needs no torch."""
from __future__ import annotations

import json

import click

from .options import precision_option

CHUNK_ROWS = 4096  # rows read, predicted and printed at a time


@click.command()
@click.argument("model", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option("--file", "file", type=click.Path(), default=None, help="Texts in a .csv, .tsv or .jsonl file.")
@click.option("--text-column", default=None, help="Text column of --file [default: text, or a usual name].")
@click.option("--text-pair-column", "pair_column", default=None, help="Second text of a pair in --file.")
@click.option("--top-k", type=int, default=1, show_default=True, help="Show the k likeliest labels (cls).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per text (JSON Lines).")
@precision_option
def predict(model, texts, file, text_column, pair_column, top_k, batch_size, as_json, precision):
    """Predict the label (and its probability) of each text."""
    from zoo.data import Table, iter_tables
    from zoo.errors import ZooError
    from zoo.inference import load_predictor, predict_table
    from zoo.precision import for_inference

    if bool(texts) == bool(file):
        raise ZooError("give texts as arguments or --file, not both" if texts else "give some texts or --file")
    if batch_size < 1 or top_k < 1:
        raise ZooError("--batch-size and --top-k must be positive integers")
    predictor = load_predictor(model)
    if file:  # streamed in chunks: a file of any size runs in constant memory
        tables = iter_tables(file, CHUNK_ROWS, text_column=text_column, pair_column=pair_column,
                             require_labels=False)
    else:
        tables = [Table("arguments", list(texts), None, None, list(range(1, len(texts) + 1)))]
    for index, table in enumerate(tables):
        if index == 0:  # the first chunk is the precision gate's sample
            predictor = for_inference(predictor, precision, table, batch_size=batch_size,
                                      note=lambda line: click.echo(line, err=True))
        for result in predict_table(predictor, table, batch_size, top_k):
            show(result, as_json)


def show(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    elif "label" in result:
        extra = "".join(f"  {t['label']}={t['probability']:.3f}" for t in result.get("top", [])[1:])
        click.echo(f"{result['label']}\t{result['probability']:.4f}\t{result['text']}{extra}")
    elif "labels" in result and "words" in result:
        click.echo(" ".join(f"{w}/{t}" for w, t in zip(result["words"], result["labels"])))
    elif "labels" in result:
        click.echo(f"{','.join(result['labels']) or '-'}\t{result['text']}")
    else:
        value = result["value"]
        shown = f"{value:.4f}" if isinstance(value, float) else ",".join(f"{v:.4f}" for v in value)
        click.echo(f"{shown}\t{result['text']}")
