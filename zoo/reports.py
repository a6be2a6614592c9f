"""Pictures and a Markdown report people would rather look at than read: training curves, confusion matrix.

matplotlib is an optional extra (``pip install 'zoo[reports]'``); nothing else in zoo needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import io
from .errors import ZooError

INSTALL_HINT = "pip install 'zoo[reports]'"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZooError(f"reports need matplotlib, which is not installed; run: {INSTALL_HINT}") from None
    return plt


def _save(fig, path: Path) -> Path:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the start is not pulled to 0."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def plot_curves(
    history: Sequence[dict[str, Any]],
    path: str | Path,
    metric: str = "macro_f1",
    lower_is_better: bool = False,
    steps: Sequence[Sequence[float]] = (),
) -> Path:
    """Loss on the left against optimizer steps: the training loss of every step (faint) and smoothed, and
    the eval loss after each epoch; the task's main eval ``metric`` per epoch on the right. Without
    per-step losses (``steps``: [step, loss] pairs) the training loss is drawn once per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    ends = [row.get("step", row["epoch"]) for row in history]
    evals = [row.get("eval") or {} for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if steps:
        xs, losses = [s for s, _ in steps], [loss for _, loss in steps]
        left.plot(xs, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
        left.plot(xs, smooth(losses), color="tab:blue", label="train loss (smoothed)")
    else:
        left.plot(ends, [row["train_loss"] for row in history], "o-", label="train loss")
    if any("loss" in e for e in evals):
        left.plot(ends, [e.get("loss") for e in evals], "s-", color="tab:orange", label="eval loss")
    left.set(xlabel="step", ylabel="loss", title="Loss")
    left.legend()
    if any(metric in e for e in evals):
        right.plot(epochs, [e.get(metric) for e in evals], "o-", color="tab:green", label=f"eval {metric}")
        if any("accuracy" in e for e in evals) and metric != "accuracy":
            right.plot(
                epochs, [e.get("accuracy") for e in evals], "s--", color="tab:olive", label="eval accuracy"
            )
        best = max(
            range(len(evals)),
            key=lambda i: evals[i].get(metric, float("-inf")) * (-1 if lower_is_better else 1),
        )
        right.axvline(epochs[best], color="grey", linestyle=":", label=f"best (epoch {epochs[best]})")
        right.legend()
    else:
        right.text(
            0.5, 0.5, "no eval data (pass --eval)", ha="center", va="center", transform=right.transAxes
        )
    right.set(xlabel="epoch", ylabel="score", title="Evaluation")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.set_xticks(epochs)
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path) -> Path:
    """Counts in each cell, coloured by the share of the true class (rows sum to 1)."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(3.5, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix",
    )
    plt.setp(ax.get_xticklabels(), rotation=45 if max(map(len, labels), default=0) > 6 else 0, ha="right")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def plot_leaderboard(
    points: Sequence[tuple[str, float | None, float]], path: str | Path, *, metric: str
) -> Path:
    """`zoo compare`'s plot: each run's metric against its throughput (tokens/s), labelled by run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, speed, value in points:
        if speed is None:
            continue
        ax.scatter([speed], [value], s=30)
        ax.annotate(label, (speed, value), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel="throughput (tokens/s)", ylabel=metric, title=f"{metric} against throughput")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def write_report(
    metrics: dict[str, Any], directory: str | Path, title: str = "Evaluation", headline: Sequence[str] = ()
) -> Path:
    """report.md (the ``headline`` metrics, a per-class table) plus confusion.png when there is a matrix;
    it links curves.png when that is already in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    headline = [k for k in ("n", "tokens", *headline, "loss") if k in metrics]
    lines += ["| metric | value |", "| --- | --- |"]
    lines += [
        f"| {k} | {metrics[k]:.4f} |" if isinstance(metrics[k], float) else f"| {k} | {metrics[k]} |"
        for k in headline
    ]
    table = metrics.get("per_class") or metrics.get("per_label")
    if table:
        lines += ["", "| label | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {label} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
            for label, r in table.items()
        ]
    if "confusion_matrix" in metrics:
        plot_confusion(metrics["confusion_matrix"], metrics["labels"], directory / "confusion.png")
        lines += ["", "![confusion matrix](confusion.png)"]
    if (directory / "curves.png").is_file():  # training curves plotted into the same directory
        lines += ["", "![training curves](curves.png)"]
    path = directory / "report.md"
    io.write_text(path, "\n".join(lines) + "\n")
    return path
