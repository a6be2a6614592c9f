"""`zoo compare`: a leaderboard of part combinations (encoder × attention) under one budget and one seed.

Each combination is one run in its own process (a crash, a NaN stop or an out-of-memory kill is that run's
failure, never the comparison's, and its peak memory is its own): build the model from scratch, pre-train it
on a corpus (when asked), fine-tune it on labelled data, evaluate. Every run writes
``runs/<name>/result.json``; a rerun skips the runs that have one (``retry_failed`` reruns the failed ones).
``results.jsonl``, ``leaderboard.md`` and ``leaderboard.png`` (the reports extra) are rewritten from the
run results after every run, so a shard (``shard=(i, n)``) or an interrupted comparison still leaves a
leaderboard, and ``merge`` joins the run results of several output directories into one."""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import io
from .errors import ZooError

RESULT_NAME = "result.json"
RESULTS_NAME = "results.jsonl"
LEADERBOARD_NAME = "leaderboard.md"
PLOT_NAME = "leaderboard.png"


@dataclass
class CompareSpec:
    """One comparison: the grid, the data and the budget every run gets."""

    archs: list[str]
    attentions: list[str]
    train: str
    eval: str | None = None
    test: str | None = None  # scored once with the fine-tuned model (else the best eval epoch's metrics)
    head: str = "cls"
    sizes: dict[str, Any] = field(default_factory=dict)
    pretrain: str | None = None  # the corpus; None: no pre-training
    pretrain_budget: str | None = None  # a duration (10m) ...
    pretrain_steps: int | None = None  # ... and/or a number of steps
    pretrain_settings: dict[str, Any] = field(default_factory=dict)  # further PretrainConfig settings
    finetune_settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig settings
    seed: int = 0
    text_column: str | None = None
    label_column: str | None = None
    encoding: str | None = None

    def runs(self) -> list[tuple[str, str, str]]:
        """(name, arch, attention) for every combination, in a fixed order."""
        return [(f"{a}+{t}", a, t) for a in self.archs for t in self.attentions]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' (1-based: 1/2 and 2/2 split a grid in two) -> (i, n)."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ZooError(f"shard must look like 1/2 (this is shard i of n), got '{text}'") from None
    if not 1 <= i <= n:
        raise ZooError(f"shard {text}: i must be between 1 and n")
    return i, n


def check_parts(spec: CompareSpec) -> None:
    """Every named part exists (a misspelt one fails here, with a did-you-mean, before any run)."""
    from .manager import get_registry

    registry = get_registry()
    for kind, names in (("encoder", spec.archs), ("attention", spec.attentions), ("head", [spec.head])):
        for name in names:
            registry.resolve(kind, name)
    if not spec.archs or not spec.attentions:
        raise ZooError("give at least one --arch and one --attention")
    if spec.pretrain is not None and spec.pretrain_budget is None and spec.pretrain_steps is None:
        raise ZooError("--pretrain needs --pretrain-budget (a duration) or --pretrain-steps")


def compare(
    spec: CompareSpec,
    output: str | Path,
    *,
    shard: tuple[int, int] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the grid (this shard of it), skipping finished runs; returns every result in ``output``."""
    check_parts(spec)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    io.write_json(output / "compare.json", asdict(spec))
    context = multiprocessing.get_context("spawn")
    for index, (name, arch, attention) in enumerate(spec.runs()):
        if shard is not None and index % shard[1] != shard[0] - 1:
            continue
        run_dir = output / "runs" / name
        done = _read_result(run_dir / RESULT_NAME)
        base = _base_row(spec, name, arch, attention)
        if done is not None and any(done.get(k) != v for k, v in base.items()):
            _note(
                progress,
                f"zoo compare: {name}: its result is from another setting (seed, sizes, budget); rerunning",
            )
            done = None
        if done is not None and (done["status"] == "ok" or not retry_failed):
            _note(progress, f"zoo compare: {name}: finished before ({done['status']}); skipped")
            continue
        _note(progress, f"zoo compare: {name}: running")
        start = time.perf_counter()
        child = context.Process(target=_run_child, args=(spec, name, arch, attention, str(run_dir), progress))
        child.start()
        child.join()
        if _read_result(run_dir / RESULT_NAME) is None:  # the process died before it could say why
            _write_result(
                run_dir,
                _failed_row(
                    spec, name, arch, attention, f"the run's process died (exit code {child.exitcode})"
                )
                | {"wall_s": round(time.perf_counter() - start, 2)},
            )
        row = _read_result(run_dir / RESULT_NAME) or {"status": "failed", "reason": "no result"}
        _note(
            progress,
            f"zoo compare: {name}: {row['status']}" + (f" ({row['reason']})" if row.get("reason") else ""),
        )
        write_leaderboard(output, collect([output]), progress)
    rows = collect([output])
    write_leaderboard(output, rows, progress)
    return rows


def merge(output: str | Path, sources: list[str | Path], progress: bool = True) -> list[dict[str, Any]]:
    """The run results of ``sources`` (and ``output``) in one leaderboard in ``output``; a run found in
    several is taken from the first that finished it without failing."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rows = collect([output, *map(Path, sources)])
    if not rows:
        raise ZooError(f"no run results (runs/*/{RESULT_NAME}) in {', '.join(map(str, [output, *sources]))}")
    for row in rows:  # the merged directory holds every run's result, so a later merge or rerun sees them
        run_dir = output / "runs" / row["run"]
        if _read_result(run_dir / RESULT_NAME) != row:
            _write_result(run_dir, row)
    write_leaderboard(output, rows, progress)
    return rows


def collect(dirs: list[Path]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for d in dirs:
        for file in sorted((d / "runs").glob(f"*/{RESULT_NAME}")):
            row = _read_result(file)
            if row is None:
                continue
            if row["run"] not in found or (found[row["run"]]["status"] != "ok" and row["status"] == "ok"):
                found[row["run"]] = row
    return list(found.values())


# ---- one run (in its own process) ---------------------------------------------------------------------
def _run_child(spec: CompareSpec, name: str, arch: str, attention: str, run_dir: str, progress: bool) -> None:
    start = time.perf_counter()
    try:
        row = run_one(spec, name, arch, attention, Path(run_dir), progress)
    except BaseException as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not isinstance(exc, ZooError):
            reason = f"{type(exc).__name__}: {reason}"
            if progress:
                traceback.print_exc()
        row = _failed_row(spec, name, arch, attention, reason)
    row["wall_s"] = round(time.perf_counter() - start, 2)
    row["peak_memory_mb"] = _peak_memory_mb()
    _write_result(Path(run_dir), row)


def run_one(
    spec: CompareSpec, name: str, arch: str, attention: str, run_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Build, pre-train (optionally), fine-tune and score one combination; its result row."""
    import torch

    from .inference import ModelPredictor, evaluate_table
    from .model import build_model, load_model
    from .training import TrainConfig, finetune
    from .training.pretrain import pretrain
    from .training.pretrain_config import PretrainConfig

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model = build_model(arch, "mlm" if spec.pretrain else spec.head, attention, seed=spec.seed, **spec.sizes)
    row = _base_row(spec, name, arch, attention) | {"params": model.num_parameters(), "status": "ok"}
    start: Any = model
    if spec.pretrain:
        config = PretrainConfig(
            **{
                "max_steps": spec.pretrain_steps,
                "time_budget": spec.pretrain_budget,
                "seed": spec.seed,
                **spec.pretrain_settings,
            }
        )
        pre = pretrain(
            model,
            spec.pretrain,
            output=run_dir / "pre",
            config=config,
            overwrite=True,
            progress=progress,
            encoding=spec.encoding,
        )
        if pre.interrupted:
            raise ZooError("interrupted while pre-training")
        info = load_model(run_dir / "pre").spec.extra.get("pretraining", {})
        last = (pre.history[-1].get("eval") if pre.history else None) or {}
        row["pretrain"] = {
            "steps": info.get("steps"),
            "tokens": info.get("tokens"),
            "seconds": info.get("seconds"),
            "tokens_per_s": round(info["tokens"] / max(info["seconds"], 1e-9), 1)
            if info.get("seconds")
            else None,
            "mlm_loss": last.get("loss"),
            "mlm_accuracy": last.get("accuracy"),
            "train_loss": pre.history[-1]["train_loss"] if pre.history else None,
        }
        start = run_dir / "pre"
    tune = TrainConfig(**{"seed": spec.seed, "head": spec.head, **spec.finetune_settings})
    result = finetune(
        start,
        spec.train,
        output=run_dir / "ft",
        eval=spec.eval,
        config=tune,
        text_column=spec.text_column,
        label_column=spec.label_column,
        overwrite=True,
        progress=progress,
        encoding=spec.encoding,
    )
    if result.interrupted:
        raise ZooError("interrupted while fine-tuning")
    model = load_model(run_dir / "ft")
    task = model.task
    if spec.test is not None:
        table = task.read(
            spec.test, text_column=spec.text_column, label_column=spec.label_column, encoding=spec.encoding
        )
        metrics, scored_on = evaluate_table(ModelPredictor(model), table), "test"
    else:
        best = next(
            (r for r in result.history if r.get("best") and r["epoch"] == (result.best or {}).get("epoch")),
            None,
        )
        metrics, scored_on = ((best or {}).get("eval") or {}), "eval"
    row["finetune"] = {
        "metric": task.main_metric,
        "value": metrics.get(task.main_metric),
        "lower_is_better": task.lower_is_better,
        "macro_f1": metrics.get("macro_f1"),
        "accuracy": metrics.get("accuracy"),
        "scored_on": scored_on,
        "epochs": result.epochs_run,
        "train_loss": result.history[-1]["train_loss"] if result.history else None,
        "tokens_per_s": _mean([r.get("tokens_per_s") for r in result.history]),
    }
    if torch.cuda.is_available():
        row["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return round(sum(values) / len(values), 1) if values else None


def throughput(row: dict[str, Any]) -> float | None:
    """Pre-training tokens/s, or fine-tuning tokens/s for a run without pre-training."""
    return (row.get("pretrain") or {}).get("tokens_per_s") or (row.get("finetune") or {}).get("tokens_per_s")


def _base_row(spec: CompareSpec, name: str, arch: str, attention: str) -> dict[str, Any]:
    return {
        "run": name,
        "arch": arch,
        "attention": attention,
        "head": spec.head,
        "seed": spec.seed,
        "sizes": spec.sizes,
        "pretrain_budget": None
        if not spec.pretrain
        else {"time": spec.pretrain_budget, "steps": spec.pretrain_steps},
    }


def _failed_row(spec: CompareSpec, name: str, arch: str, attention: str, reason: str) -> dict[str, Any]:
    return _base_row(spec, name, arch, attention) | {"status": "failed", "reason": reason}


def _peak_memory_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and "run" in row and "status" in row else None


def _write_result(run_dir: Path, row: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    io.write_json(run_dir / RESULT_NAME, row)


def _note(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


# ---- the leaderboard ----------------------------------------------------------------------------------
def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished runs best first by the fine-tuning metric, then the failed ones by name."""
    ok = [r for r in rows if r["status"] == "ok" and (r.get("finetune") or {}).get("value") is not None]
    lower = bool(ok and ok[0]["finetune"].get("lower_is_better"))
    ok.sort(key=lambda r: (r["finetune"]["value"] if lower else -r["finetune"]["value"], r["run"]))
    return ok + sorted((r for r in rows if r not in ok), key=lambda r: r["run"])


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def leaderboard_markdown(rows: list[dict[str, Any]]) -> str:
    rows = ranked(rows)
    metric = next((r["finetune"]["metric"] for r in rows if r.get("finetune")), "metric")
    extra = [k for k in ("macro_f1", "accuracy") if k != metric]  # the metric's column is not repeated
    head = [
        "#",
        "encoder",
        "attention",
        metric,
        *extra,
        "MLM loss",
        "tokens/s",
        "params",
        "peak MB",
        "wall s",
    ]
    lines = ["| " + " | ".join([*head, "status"]) + " |", "|" + "---|" * (len(head) + 1)]
    for rank, r in enumerate(rows, start=1):
        ft, pre = r.get("finetune") or {}, r.get("pretrain") or {}
        status = r["status"] if r["status"] == "ok" else f"failed: {r.get('reason', '')}".replace("|", "\\|")
        cells = [
            str(rank) if r["status"] == "ok" else "–",
            r["arch"],
            r["attention"],
            _fmt(ft.get("value")),
            *(_fmt(ft.get(k)) for k in extra),
            _fmt(pre.get("mlm_loss")),
            _fmt(throughput(r), 0),
            _fmt(r.get("params")),
            _fmt(r.get("peak_memory_mb"), 0),
            _fmt(r.get("wall_s"), 1),
            status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboard(output: Path, rows: list[dict[str, Any]], progress: bool = True) -> None:
    rows = ranked(rows)
    io.write_text(output / RESULTS_NAME, "".join(json.dumps(r) + "\n" for r in rows))
    io.write_text(output / LEADERBOARD_NAME, leaderboard_markdown(rows))
    points = [
        (r["run"], throughput(r), r["finetune"]["value"])
        for r in rows
        if r["status"] == "ok" and r.get("finetune")
    ]
    if not points:
        return
    from .reports import plot_leaderboard

    metric = next(r["finetune"]["metric"] for r in rows if r.get("finetune"))
    try:
        plot_leaderboard(points, output / PLOT_NAME, metric=metric)
    except ZooError as exc:
        if progress and not getattr(write_leaderboard, "_said", False):
            write_leaderboard._said = True  # type: ignore[attr-defined]
            print(f"zoo compare: no {PLOT_NAME} ({exc})", file=sys.stderr)
