"""``zoo rerank``: texts ranked for a query by a cross-encoder, from a model directory or an export
(onnxruntime, no torch)."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("model", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option("--query", "-q", default=None, help="The query every text is scored against (required).")
@click.option("--file", "file", type=click.Path(), default=None, help="Texts in a .csv, .tsv or .jsonl file.")
@click.option("--text-column", default=None, help="Text column of --file [default: text, or a usual name].")
@click.option("--top-k", type=int, default=None, help="Show only the best K texts.")
@click.option("--raw-scores", is_flag=True, help="The model's logits instead of sigmoid scores in [0, 1].")
@click.option("--return-text", is_flag=True, help="Put each text in the --json answer.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print [{"index": i, "score": s}, ...], best first.')
def rerank(model, texts, query, file, text_column, top_k, raw_scores, return_text, batch_size, as_json):
    """Rank texts by their relevance to --query (a rerank model: zoo build --head rerank)."""
    from zoo.data import iter_tables
    from zoo.errors import ZooError
    from zoo.inference import load_predictor
    from zoo.rerank import require_rerank
    from zoo.rerank import rerank as rank
    from zoo.tasks import one_line

    if query is None:
        raise ZooError('give the query with --query "..." (the texts to rank are arguments or --file)')
    if bool(texts) == bool(file):
        raise ZooError(
            "give texts as arguments or --file, not both" if texts else "give some texts or --file"
        )
    if batch_size < 1:
        raise ZooError("--batch-size must be a positive integer")
    if top_k is not None and top_k < 1:
        raise ZooError("--top-k must be a positive integer")
    if file:
        texts = [
            str(t)
            for table in iter_tables(file, text_column=text_column, require_labels=False)
            for t in table.texts
        ]
    predictor = load_predictor(model)
    require_rerank(predictor, model)
    results = rank(
        predictor, query, list(texts), raw_scores=raw_scores, return_text=True, batch_size=batch_size
    )
    results = results[:top_k] if top_k else results
    if as_json:
        shown = results if return_text else [{k: v for k, v in r.items() if k != "text"} for r in results]
        click.echo(json.dumps(shown, ensure_ascii=False))
        return
    for r in results:
        click.echo(f"{r['score']:.4f}\t{r['index']}\t{one_line(r['text'])}")
