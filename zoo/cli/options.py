"""Option parsing shared by the commands."""

from __future__ import annotations

import json
from typing import Any

import click

from zoo.constants import LONG_TEXT_MODES
from zoo.errors import ZooError, did_you_mean
from zoo.registry import MODEL_PARTS

PART_KINDS = tuple(sorted(MODEL_PARTS))  # what `--set KIND.option=value` may name


def parse_value(text: str) -> Any:
    """'2' -> 2, '0.1' -> 0.1, 'true' -> True, '[1,2]' -> [1, 2]; anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_settings(
    items: tuple[str, ...], kinds: tuple[str, ...] = PART_KINDS, sizes_allowed: bool = True
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set`` items: 'attention.num_kv_heads=2' is a part option, 'd_model=128' a size."""
    sizes: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {k: {} for k in kinds}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ZooError(f"--set expects KEY=VALUE (e.g. attention.num_kv_heads=2), got '{item}'")
        kind, dot, option = key.partition(".")
        if dot:
            if kind not in kinds:
                raise ZooError(
                    f"--set {key}: unknown prefix '{kind}'{did_you_mean(kind, kinds) or ';'} "
                    f"the prefix must be one of {', '.join(kinds)}"
                )
            parts[kind][option] = parse_value(value)
        elif not sizes_allowed:
            raise ZooError(f"--set {key}: expected {' or '.join(f'{k}.OPTION' for k in kinds)}=VALUE")
        else:
            sizes[key] = parse_value(value)
    return sizes, parts


def data_columns(f):
    """--text-column, --label-column and --text-pair-column, for the commands that read labelled data."""
    f = click.option("--text-pair-column", "pair_column", default=None, help="Second text of a pair.")(f)
    f = click.option("--label-column", default=None, help="Label column [default: label, or a usual name].")(
        f
    )
    f = click.option("--text-column", default=None, help="Text column [default: text, or a usual name].")(f)
    return f


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def threads_option(f):
    """--threads for a command that computes; the command calls zoo.threads.use(threads) first."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help="CPU threads [default: the CPUs this process may use (affinity, cgroup quota)].",
    )(f)


def encoding_option(f):
    return click.option(
        "--encoding",
        default=None,
        help="Encoding of the data file [default: its byte-order mark, UTF-8, else cp1252].",
    )(f)


class Choice(click.Choice):
    """click.Choice whose error also names the closest choice: 'bf61' ... ; did you mean 'bf16'?"""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            exc.message = exc.message.rstrip(".") + (did_you_mean(str(value), map(str, self.choices)) or ".")  # type: ignore[misc]  # Final in click's hints
            raise


def precision_option(f):
    """--precision for predict and evaluate (the torch path; an export runs as exported)."""
    return click.option(
        "--precision",
        type=Choice(["auto", "fp32", "bf16"]),
        default="fp32",
        show_default=True,
        help="auto: bf16 where the CPU has AMX or AVX512-BF16 and bf16 agrees with fp32 on "
        "≥ 99.5% of the data's first 512 rows; model directories only.",
    )(f)


def long_text_options(f):
    """--long-text and --stride for the commands that read text (the command calls zoo.windows.use)."""
    f = click.option(
        "--stride",
        type=click.IntRange(min=0),
        default=None,
        help="Tokens that neighbouring windows share [default: the model's record, else a quarter of a window].",
    )(f)
    return click.option(
        "--long-text",
        type=Choice(LONG_TEXT_MODES),
        default=None,
        help="Texts longer than the model's length: truncate, window (overlapping windows, outputs averaged "
        "per text) or window-max [default: as the model was trained, else truncate].",
    )(f)
