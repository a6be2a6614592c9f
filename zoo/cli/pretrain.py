"""``zoo pretrain``: masked-language-model pre-training of a model with an mlm head on a text corpus."""

from __future__ import annotations

import sys

import click

from .finetune import config_options
from .options import encoding_option


def pretrain_options(f):
    from zoo.training.pretrain_config import PretrainConfig

    return config_options(f, PretrainConfig)


@click.command()
@click.argument("model", type=click.Path())
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="The corpus: .txt (one document per line), .jsonl or .csv/.tsv with a text column. Streamed.",
)
@click.option("--output", "-o", required=True, type=click.Path(), help="Model directory to write.")
@pretrain_options
@click.option("--resume", is_flag=True, help="Continue the interrupted or finished run in --output.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@encoding_option
def pretrain(model, data, output, resume, overwrite, quiet, encoding, **settings):
    """Pre-train MODEL (a model directory with an mlm head: `zoo build --head mlm -o base`) on a corpus.

    Dynamic masking (--mask-rate, 80% [MASK] / 10% random / 10% kept; --whole-word), blocks packed to
    --max-length, a WordPiece tokenizer trained on the corpus when MODEL has none, a held-out slice scored
    every --eval-every steps. Stops at --max-steps or --time-budget. Afterwards `zoo finetune OUTPUT ...`
    replaces the mlm head with the task's head. Under `torchrun --no-python zoo pretrain ...` it runs DDP.
    """
    from zoo.device import dist_env
    from zoo.training.pretrain import pretrain as run
    from zoo.training.pretrain_config import PretrainConfig

    result = run(
        model,
        data,
        output=output,
        config=PretrainConfig(**settings),
        encoding=encoding,
        resume=resume,
        overwrite=overwrite,
        progress=not quiet,
    )
    if result.interrupted:
        sys.exit(128 + (result.signal or 2))
    if result.history and not quiet and dist_env().is_main:
        last = result.history[-1].get("eval")
        if last:
            click.echo(f"final eval: mlm loss {last['loss']:.4f} accuracy {last['accuracy']:.4f}", err=True)
