"""``zoo predict``: labels for texts given as arguments or in a file. An export directory needs no torch."""

from __future__ import annotations

import json

import click

from .options import encoding_option, long_text_options, precision_option, threads_option

CHUNK_ROWS = 4096  # rows read, predicted and printed at a time


@click.command()
@click.argument("model", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option(
    "--file",
    "file",
    type=click.Path(),
    default=None,
    help="Texts in a .csv, .tsv or .jsonl file, or a .txt file of one text per line.",
)
@click.option("--text-column", default=None, help="Text column of --file [default: text, or a usual name].")
@click.option("--text-pair-column", "pair_column", default=None, help="Second text of a pair in --file.")
@click.option(
    "--top-k", type=int, default=1, show_default=True, help="Show the k likeliest labels (classification)."
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per text (JSON Lines).")
@encoding_option
@threads_option
@precision_option
@long_text_options
def predict(
    model,
    texts,
    file,
    text_column,
    pair_column,
    top_k,
    batch_size,
    as_json,
    encoding,
    threads,
    precision,
    long_text,
    stride,
):
    """Predict the label (and its probability) of each text."""
    from zoo import windows
    from zoo.data import Table, iter_tables
    from zoo.errors import ZooError
    from zoo.inference import load_predictor, predict_table
    from zoo.precision import for_inference
    from zoo.threads import use

    if bool(texts) == bool(file):
        raise ZooError(
            "give texts as arguments or --file, not both" if texts else "give some texts or --file"
        )
    if batch_size < 1 or top_k < 1:
        raise ZooError("--batch-size and --top-k must be positive integers")
    use(threads)
    predictor = load_predictor(model)
    if file:  # streamed in chunks: a file of any size runs in constant memory
        tables = iter_tables(
            file,
            CHUNK_ROWS,
            text_column=text_column,
            pair_column=pair_column,
            require_labels=False,
            encoding=encoding,
        )
    else:
        tables = iter([Table("arguments", list(texts), None, None, list(range(1, len(texts) + 1)))])
    task = predictor.task
    if top_k > 1 and not task.uses_top_k:
        click.echo(f"zoo: --top-k does not apply to task '{task.name}'; ignored", err=True)
    for index, table in enumerate(tables):
        if index == 0:  # the first chunk is the precision gate's sample
            predictor = for_inference(
                predictor,
                precision,
                table,
                batch_size=batch_size,
                note=lambda line: click.echo(line, err=True),
            )
            windows.use(predictor, long_text, stride)
        for result in predict_table(predictor, table, batch_size, top_k):
            click.echo(json.dumps(result, ensure_ascii=False) if as_json else task.format_prediction(result))
