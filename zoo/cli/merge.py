"""``zoo merge``: fold an adapter directory into its base model and write a plain model directory."""

from __future__ import annotations

import click


@click.command()
@click.argument("adapter_dir", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="Model directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def merge(adapter_dir, output, overwrite):
    """Merge ADAPTER_DIR (written by `zoo finetune --adapter`) into its base: a plain model directory whose
    outputs match the adapter model's within 1e-5."""
    from zoo.errors import ZooError
    from zoo.io import directory_lock, prepare_output
    from zoo.model import load_model

    model = load_model(adapter_dir)
    if model.adapter is None:
        raise ZooError(
            f"{adapter_dir} is a plain model directory, not an adapter directory; nothing to merge"
        )
    from pathlib import Path

    if Path(output).resolve() in (Path(adapter_dir).resolve(), Path(model.adapter.base)):
        raise ZooError("--output must be a new directory, not the adapter directory or its base")
    name = model.adapter.adapter.name
    model.merge_adapter()
    with directory_lock(output):
        model.save(prepare_output(output, overwrite))
    click.echo(f"merged {name} from {adapter_dir} into {output}")
