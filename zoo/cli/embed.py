"""``zoo embed``: one vector per text, from a model directory or an export (onnxruntime, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import long_text_options

CHUNK_ROWS = 4096  # rows read and embedded at a time
WRITERS = (".npy", ".jsonl")


@click.command()
@click.argument("model", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option("--file", "file", type=click.Path(), default=None, help="Texts in a .csv, .tsv or .jsonl file.")
@click.option("--text-column", default=None, help="Text column of --file [default: text, or a usual name].")
@click.option(
    "--output", "-o", type=click.Path(), default=None, help="Write the vectors to a .npy or .jsonl file."
)
@click.option(
    "--normalize/--no-normalize", default=None, help="Scale vectors to length 1 [default: as the model does]."
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--prefix", default="", help='Put before every text, for models trained with one ("query: ").')
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of vectors (one per text).")
@long_text_options
def embed(model, texts, file, text_column, output, normalize, batch_size, prefix, as_json, long_text, stride):
    """Embed texts: one vector per text (an embedding model)."""
    from zoo import windows
    from zoo.data import Table, iter_tables
    from zoo.embedding import embed_tables, require_embeddings, set_normalize
    from zoo.errors import ZooError
    from zoo.inference import load_predictor

    if bool(texts) == bool(file):
        raise ZooError(
            "give texts as arguments or --file, not both" if texts else "give some texts or --file"
        )
    if batch_size < 1:
        raise ZooError("--batch-size must be a positive integer")
    if output and Path(output).suffix not in WRITERS:
        raise ZooError(f"--output must end in {' or '.join(WRITERS)}, got {output}")
    predictor = load_predictor(model)
    require_embeddings(predictor, model)
    set_normalize(predictor, normalize, model)
    windows.use(predictor, long_text, stride)
    tables = (
        iter_tables(file, CHUNK_ROWS, text_column=text_column, require_labels=False)
        if file
        else [Table("arguments", list(texts), None, None, list(range(1, len(texts) + 1)))]
    )
    chunks = embed_tables(predictor, tables, batch_size=batch_size, prefix=prefix, normalize=normalize)
    if output:
        count = write(Path(output), chunks)
        click.echo(f"zoo: wrote {count} vectors to {output}", err=True)
        return
    if as_json:
        vectors = [v.tolist() for _, chunk in chunks for v in chunk]
        click.echo(json.dumps(vectors))
        return
    for table, chunk in chunks:
        for text, vector in zip(table.texts, chunk):
            click.echo(predictor.task.format_prediction({"text": text, "embedding": vector.tolist()}))


def write(path: Path, chunks) -> int:
    """Vectors to .npy (one float32 array) or .jsonl ({"text", "embedding"} per line), written atomically."""
    import numpy as np

    from zoo import io

    if path.suffix == ".npy":
        arrays = [chunk for _, chunk in chunks]
        vectors = np.concatenate(arrays) if arrays else np.zeros((0, 0), dtype=np.float32)
        with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, vectors.astype(np.float32))
        return len(vectors)
    count = 0
    with io.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for table, chunk in chunks:
            for text, vector in zip(table.texts, chunk):
                handle.write(
                    json.dumps({"text": text, "embedding": vector.tolist()}, ensure_ascii=False) + "\n"
                )
                count += 1
    return count
