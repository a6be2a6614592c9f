"""``zoo build``: assemble a model from named parts (or import a pretrained checkpoint) and save it."""

from __future__ import annotations

import json

import click

from zoo.io import prepare_output

from .options import human_bytes, parse_settings


def size_options(f):
    """The size options as flags; --set name=value works for them too."""
    for name, kind, help_text in reversed(
        [
            ("--d-model", int, "Hidden width."),
            ("--num-layers", int, "Number of encoder blocks."),
            ("--num-heads", int, "Attention heads."),
            ("--ffn-dim", int, "Feed-forward width (default 4 × d_model)."),
            ("--vocab-size", int, "Vocabulary size."),
            ("--max-length", int, "Longest sequence."),
            ("--num-labels", int, "Number of labels (outputs) of the head."),
            ("--dropout", float, "Dropout probability."),
        ]
    ):
        f = click.option(name, type=kind, default=None, help=help_text)(f)
    return f


@click.command()
@click.option(
    "--arch",
    "--encoder",
    "arch",
    default="transformer",
    show_default=True,
    help="Encoder architecture (see `zoo parts`).",
)
@click.option("--attention", default=None, help="Attention variant [default: sdpa].")
@click.option(
    "--head",
    default=None,
    help="Task head [default: cls; embedding when --from-pretrained is a "
    "sentence-transformers directory (pass --head cls for a classifier)].",
)
@click.option(
    "--from-pretrained",
    "pretrained",
    type=click.Path(),
    default=None,
    help="Import a Hugging Face BERT-family directory instead of fresh weights.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A part option (attention.window=32, head.pooling=mean) or a size (d_model=128).",
)
@click.option("--labels", default=None, help="Comma-separated label names (sets --num-labels).")
@size_options
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the fresh weights.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Model directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(arch, attention, head, pretrained, settings, labels, seed, output, overwrite, as_json, **sizes):
    """Assemble a model from parts and write it to a model directory."""
    from zoo.errors import ZooError
    from zoo.io import directory_lock
    from zoo.model import build_model, summary

    set_sizes, part_opts = parse_settings(settings)
    sizes = {**set_sizes, **{k: v for k, v in sizes.items() if v is not None}}
    label_list = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    if pretrained:
        from zoo.hf import import_pretrained

        extra = sorted(k for k in sizes if k not in ("num_labels", "dropout", "max_length"))
        if extra:
            raise ZooError(f"--from-pretrained takes its sizes from the checkpoint; drop {', '.join(extra)}")
        model = import_pretrained(
            pretrained,
            head=head or None,
            attention=attention,
            labels=label_list,
            head_options=part_opts["head"],
            attention_options=part_opts["attention"],
            task_options=part_opts["task"],
            seed=seed,
            **sizes,
        )
    else:
        model = build_model(
            arch,
            head or "cls",
            attention,
            labels=label_list,
            seed=seed,
            attention_options=part_opts["attention"],
            encoder_options=part_opts["encoder"],
            head_options=part_opts["head"],
            task_options=part_opts["task"],
            **sizes,
        )
    with directory_lock(output):
        path = prepare_output(output, overwrite)
        model.save(path)
    info = summary(model, path)
    if as_json:
        click.echo(json.dumps({"output": str(path), **info}, indent=2))
        return
    click.echo(f"built {path}")
    for kind in ("encoder", "attention", "head"):
        choice = getattr(model.spec, kind)
        opts = " ".join(f"{k}={v}" for k, v in choice.options.items())
        click.echo(f"  {kind:<10} {choice.name:<12} ({choice.plugin}) {opts}".rstrip())
    s = model.spec.sizes
    click.echo(
        f"  sizes      d_model={s['d_model']} layers={s['num_layers']} heads={s['num_heads']} "
        f"ffn={s['ffn_dim']} vocab={s['vocab_size']} labels={s['num_labels']}"
    )
    click.echo(f"  parameters {info['parameters']:,}")
    click.echo(f"  on disk    {human_bytes(info['bytes_on_disk'])}")
