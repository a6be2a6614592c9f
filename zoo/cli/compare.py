"""``zoo compare``: the leaderboard of encoder × attention combinations under one budget and seed."""

from __future__ import annotations

import click

from .options import encoding_option


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _settings(config_class, given: dict, what: str) -> dict:
    """``--set pretrain.KEY=VALUE`` items checked against the config class's settings."""
    from dataclasses import fields

    from zoo.errors import ZooError, did_you_mean

    known = {f.name: f.name for f in fields(config_class)}
    known.update(  # a flag's name is fine too: finetune.threads is num_threads
        {
            f.metadata["flag"][2:].replace("-", "_"): f.name
            for f in fields(config_class)
            if f.metadata.get("flag")
        }
    )
    for key in given:
        if key not in known:
            raise ZooError(f"--set {what}.{key}: no such setting{did_you_mean(key, known) or ''}")
    return {known[k]: v for k, v in given.items()}


@click.command()
@click.argument("sources", nargs=-1, type=click.Path())
@click.option("--attention", default="sdpa", show_default=True, help="Attention variants, comma-separated.")
@click.option("--arch", default="transformer", show_default=True, help="Encoders, comma-separated.")
@click.option("--head", default="cls", show_default=True, help="The fine-tuning head (its task scores runs).")
@click.option("--train", type=click.Path(), help="Labelled training data (.csv, .tsv, .jsonl).")
@click.option("--eval", "eval_path", type=click.Path(), help="Evaluation data: picks each run's best epoch.")
@click.option(
    "--test", "test_path", type=click.Path(), help="Scored once per run [default: the best eval epoch]."
)
@click.option(
    "--pretrain", "corpus", type=click.Path(), help="Pre-train every run on this corpus first (mlm)."
)
@click.option("--pretrain-budget", help="Pre-training time per run: 90s, 10m, 1h.")
@click.option(
    "--pretrain-steps", type=int, help="Pre-training steps per run (with or instead of the budget)."
)
@click.option("--seed", default=0, show_default=True, help="The seed of every run.")
@click.option(
    "--set",
    "set_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="A size for every model (d_model=128, num_layers=2, vocab_size=8000), or a setting: "
    "finetune.epochs=3, finetune.lr=1e-3, pretrain.mask_rate=0.3, pretrain.batch_size=64.",
)
@click.option("--output", "-o", required=True, type=click.Path(), help="The comparison directory.")
@click.option("--shard", help="Run only shard i of n of the grid (1/2 and 2/2 split it in two).")
@click.option(
    "--merge", is_flag=True, help="Join the run results of SOURCES (comparison directories) into -o."
)
@click.option("--retry-failed", is_flag=True, help="Run the failed runs again (finished ones are skipped).")
@click.option("--text-column", default=None, help="Text column [default: text, or a usual name].")
@click.option("--label-column", default=None, help="Label column [default: label, or a usual name].")
@click.option("--quiet", "-q", is_flag=True, help="Only the leaderboard.")
@encoding_option
def compare(
    sources,
    attention,
    arch,
    head,
    train,
    eval_path,
    test_path,
    corpus,
    pretrain_budget,
    pretrain_steps,
    seed,
    set_items,
    output,
    shard,
    merge,
    retry_failed,
    text_column,
    label_column,
    quiet,
    encoding,
):
    """Build, (pre-train,) fine-tune and score every --arch × --attention combination with the same budget
    and seed; write OUTPUT/results.jsonl, leaderboard.md and leaderboard.png (the reports extra).

    Each run has its own process: a failed or diverged run is a row marked failed with its reason. Rerunning
    skips finished runs; --shard i/n runs a part of the grid (say, one per machine) and `zoo compare --merge
    DIR... -o OUT` joins the parts.
    """
    from pathlib import Path

    from zoo import compare as C
    from zoo.errors import ZooError
    from zoo.training.config import TrainConfig
    from zoo.training.pretrain_config import PretrainConfig

    from .options import parse_settings

    if merge:
        rows = C.merge(output, list(sources), progress=not quiet)
    else:
        if sources:
            raise ZooError(f"unexpected argument '{sources[0]}' (directories are for --merge)")
        if not train:
            raise ZooError("--train is required (labelled data to fine-tune every run on)")
        sizes, parts = parse_settings(set_items, ("pretrain", "finetune"))
        spec = C.CompareSpec(
            archs=_names(arch),
            attentions=_names(attention),
            train=train,
            eval=eval_path,
            test=test_path,
            head=head,
            sizes=sizes,
            pretrain=corpus,
            pretrain_budget=pretrain_budget,
            pretrain_steps=pretrain_steps,
            pretrain_settings=_settings(PretrainConfig, parts["pretrain"], "pretrain"),
            finetune_settings=_settings(TrainConfig, parts["finetune"], "finetune"),
            seed=seed,
            text_column=text_column,
            label_column=label_column,
            encoding=encoding,
        )
        rows = C.compare(
            spec, output, shard=C.parse_shard(shard), retry_failed=retry_failed, progress=not quiet
        )
    click.echo((Path(output) / C.LEADERBOARD_NAME).read_text() if rows else "no runs", nl=False)
