"""Contrastive fine-tuning: `zoo finetune` of an embedding model against sentence-transformers' trainer.

Both arms start from MiniLM (all-MiniLM-L6-v2: mean pooling, normalised) and train with the same loss
(MultipleNegativesRankingLoss: cosine x 20, in-batch negatives), batch size, learning rate, warm-up, weight
decay, gradient clipping, maximum length and number of steps, on CPU, on the same real pairs: numpy's
docstrings, summary -> Parameters/Returns/Notes (bench/retrieval_data.py), split 70/30 by function.
sentence-transformers runs SentenceTransformerTrainer with the NO_DUPLICATES batch sampler (what its docs
advise for this loss; zoo's sampler also keeps duplicate texts out of a batch). The arms are interleaved in
one process (zoo, peer, zoo, peer...) so background load hits both alike; each is timed from its pairs to a
trained model (zoo's time includes writing its model directory and trainer state, the peer's its save).
Afterwards every model (the pretrained one and each arm's) embeds the held-out queries and documents with its
own encoder and is scored by one function (zoo.retrieval.pair_retrieval: each query ranked against every
held-out document). Prints a markdown table, writes bench/results/contrastive.json.

    python bench/contrastive.py                     # 256 pairs, batch 32, 2 epochs (16 steps), 2 rounds
    python bench/contrastive.py --rounds 1 --epochs 1 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "contrastive.json"


def split(seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The train and test pairs of bench/retrieval_data.py (same shuffle, same 70/30 cut)."""
    sys.path.insert(0, str(HERE))
    from retrieval_data import pairs

    rows = pairs()
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * 0.7)
    return [(q, d) for _, q, d in rows[:cut]], [(q, d) for _, q, d in rows[cut:]]


def write_pairs(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("anchor", "positive"))
        writer.writerows(rows)
    return path


def scores(embed, test) -> dict[str, float]:
    """ndcg@10 and friends of `embed` (texts -> vectors) on the held-out pairs."""
    from zoo.retrieval import pair_retrieval

    queries, docs = [q for q, _ in test], [d for _, d in test]
    metrics = pair_retrieval(embed(queries), embed(docs), queries, docs)
    return {k: float(metrics[k]) for k in ("ndcg@10", "mrr@10", "recall@1", "recall@10")}


def run_zoo(minilm: str, train_csv: Path, out: Path, args) -> tuple[float, object]:
    from zoo import load_model
    from zoo.hf import import_pretrained
    from zoo.training import TrainConfig, finetune

    start_dir = out.parent / "zoo-start"
    if not start_dir.exists():
        import_pretrained(minilm, head=None).save(start_dir)  # a sentence-transformers dir: embedding head
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_ratio=args.warmup_ratio,
        weight_decay=0.01,
        max_grad_norm=1.0,
        max_length=args.max_length,
        seed=args.seed,
        patience=None,
        curves=False,
        num_threads=args.threads,
    )
    start = time.perf_counter()
    finetune(start_dir, train_csv, output=out, config=config, overwrite=True, progress=False)
    return time.perf_counter() - start, load_model(out)


def run_peer(minilm: str, train, out: Path, args) -> tuple[float, object]:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    start = time.perf_counter()
    model = SentenceTransformer(minilm, device="cpu")
    model.max_seq_length = args.max_length
    data = Dataset.from_dict({"anchor": [a for a, _ in train], "positive": [p for _, p in train]})
    training = SentenceTransformerTrainingArguments(
        output_dir=str(out),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_ratio=args.warmup_ratio,
        weight_decay=0.01,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=args.seed,
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_drop_last=False,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training, train_dataset=data, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    model.save(str(out / "final"))
    seconds = time.perf_counter() - start
    if trainer.state.global_step != args.steps:
        sys.exit(f"sentence-transformers ran {trainer.state.global_step} steps, zoo {args.steps}")
    return seconds, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=256, help="training pairs (of the 270)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved (zoo, peer) pairs of runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: usable CPUs]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from zoo.threads import use

    threads = use(args.threads)  # before torch loads: OpenMP threads wait passively, as under `zoo`
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from zoo.embedding import embed_texts
    from zoo.hf import default_checkpoint
    from zoo.inference import ModelPredictor

    torch.set_num_threads(threads)
    minilm = str(default_checkpoint())
    train, test = split(args.seed)
    train = train[: args.train_rows]
    args.steps = args.epochs * -(-len(train) // args.batch_size)
    pretrained = SentenceTransformer(minilm, device="cpu")
    pretrained.max_seq_length = args.max_length

    def st_embed(model):
        return lambda texts: np.asarray(model.encode(texts, batch_size=32), dtype=np.float64)

    def zoo_embed(model):
        return lambda texts: embed_texts(ModelPredictor(model), texts, batch_size=32).astype(np.float64)

    loads = [os.getloadavg()[0]]
    times: dict[str, list[float]] = {"zoo": [], "sentence-transformers": []}
    cpu: dict[str, list[float]] = {"zoo": [], "sentence-transformers": []}  # CPU seconds: steadier under load
    quality: dict[str, dict[str, float]] = {"pretrained (MiniLM)": scores(st_embed(pretrained), test)}
    with tempfile.TemporaryDirectory() as tmp:
        train_csv = write_pairs(Path(tmp) / "train.csv", train)
        for r in range(args.rounds):
            used = time.process_time()
            seconds, model = run_zoo(minilm, train_csv, Path(tmp) / f"zoo{r}", args)
            times["zoo"].append(seconds)
            cpu["zoo"].append(time.process_time() - used)
            if r == 0:
                quality["zoo"] = scores(zoo_embed(model), test)
            loads.append(os.getloadavg()[0])
            used = time.process_time()
            seconds, model = run_peer(minilm, train, Path(tmp) / f"st{r}", args)
            times["sentence-transformers"].append(seconds)
            cpu["sentence-transformers"].append(time.process_time() - used)
            if r == 0:
                quality["sentence-transformers"] = scores(st_embed(model), test)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}: zoo {times['zoo'][-1]:.1f} s, peer {seconds:.1f} s", file=sys.stderr)
    base = statistics.median(times["sentence-transformers"])
    cpu_base = statistics.median(cpu["sentence-transformers"])
    rows = []
    for name in ("sentence-transformers", "zoo"):
        median = statistics.median(times[name])
        rows.append(
            {
                "runner": name,
                "median_s": median,
                "pairs_per_s": args.steps * args.batch_size / median if len(train) else 0.0,
                "speedup": base / median,
                "cpu_s": statistics.median(cpu[name]),
                "cpu_speedup": cpu_base / statistics.median(cpu[name]),
                **quality[name],
            }
        )
    sys.path.insert(0, str(HERE))
    from inference import machine

    host = machine()
    result = {
        "machine": host,
        "threads": threads,
        "load_average": loads,
        "train_pairs": len(train),
        "test_pairs": len(test),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "steps": args.steps,
        "max_length": args.max_length,
        "lr": args.lr,
        "rounds": args.rounds,
        "rows": rows,
        "pretrained": quality["pretrained (MiniLM)"],
        "times": times,
        "cpu_seconds": cpu,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{host}, {threads} threads, load average {min(loads):.1f}-{max(loads):.1f}; {len(train)} train pairs, "
        f"{args.steps} steps of {args.batch_size}, max length {args.max_length}, median of {args.rounds} "
        f"rounds; ndcg@10 on {len(test)} held-out pairs\n"
    )
    print(
        "| runner | s per run | pairs/s | vs sentence-transformers | CPU s (ratio) | ndcg@10 | mrr@10 | recall@10 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    p = quality["pretrained (MiniLM)"]
    print(
        f"| pretrained MiniLM (no training) | | | | | {p['ndcg@10']:.4f} | {p['mrr@10']:.4f} | {p['recall@10']:.4f} |"
    )
    for row in rows:
        print(
            f"| {row['runner']} | {row['median_s']:.1f} | {row['pairs_per_s']:.1f} | {row['speedup']:.2f}× "
            f"| {row['cpu_s']:.0f} ({row['cpu_speedup']:.2f}×) | {row['ndcg@10']:.4f} | {row['mrr@10']:.4f} | {row['recall@10']:.4f} |"
        )


if __name__ == "__main__":
    main()
