"""Regenerate the README's performance table: run the inference and fine-tuning benchmarks (each runs
zoo and its peer interleaved in one process), then print one markdown table of speed-ups against the
issue-8 targets and write bench/results/summary.json.

    python bench/run.py                       # full: 40 rounds; 3000 tweets, 1 epoch
    python bench/run.py --threads 1           # on a machine others are loading
    python bench/run.py --reuse               # rebuild the table from the last results/*.json
    python bench/run.py --quick               # 10 rounds; 300 tweets (a smoke run, not for the README)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def run(script: str, *args: str) -> None:
    command = [sys.executable, str(HERE / script), *args]
    print("$", " ".join(command[1:]), file=sys.stderr)
    subprocess.run(command, check=True)


def rows(inference: dict, finetune: dict) -> list[dict]:
    """One row per target: what, zoo's figure, the peer's, the ratio and the target it is held to."""
    by = {(r["runner"], r["batch"]): r for r in inference["results"]}
    peer = "transformers eager (sdpa)"
    out = []
    # targets per batch size (issues 8 and 17); None: reported, not held to a target
    targets = {"zoo eager": {1: 1.0, 8: 1.0}, "zoo ONNX fp32": {1: 1.25}, "zoo ONNX int8": {1: 3.0, 8: 2.5}}
    for runner, label in (
        ("zoo eager", "eager inference"),
        ("zoo ONNX fp32", "ONNX fp32 inference"),
        ("zoo ONNX int8", "ONNX int8 inference"),
    ):
        for batch in sorted({b for _, b in by}):
            z, p = by[(runner, batch)], by[(peer, batch)]
            out.append(
                {
                    "what": f"{label}, batch {batch}",
                    "zoo": f"{z['median_ms']:.1f} ms",
                    "peer": f"{p['median_ms']:.1f} ms",
                    "value": z["speedup_vs_transformers"],
                    "unit": "x",
                    "target": targets[runner].get(batch),
                }
            )
    for runner, label in (("zoo ONNX fp32", "fp32"), ("zoo ONNX int8", "int8")):  # the file alone (issue 17)
        for batch in sorted({b for r, b in by if r == f"{runner} (plain session)"}):
            plain, z = by[(f"{runner} (plain session)", batch)], by[(runner, batch)]
            out.append(
                {
                    "what": f"ONNX {label} file in a plain onnxruntime session vs zoo's, batch {batch}",
                    "zoo": f"{plain['median_ms']:.1f} ms",
                    "peer": f"zoo {z['median_ms']:.1f} ms",
                    "value": z["median_ms"] / plain["median_ms"],
                    "unit": "ratio",
                    "target": 0.9 if label == "int8" else None,
                }
            )
    peak = inference["matmul_peak_gflops_per_s"]
    fp32 = by[("zoo ONNX fp32", 1)]
    out.append(
        {
            "what": "ONNX fp32 GFLOP/s, batch 1, vs fp32 matmul peak",
            "zoo": f"{fp32['gflops_per_s']:.0f} GFLOP/s",
            "peer": f"peak {peak:.0f} GFLOP/s",
            "value": fp32["gflops_per_s"] / peak,
            "unit": "%",
            "target": 0.75,
        }
    )
    z, t = finetune["median"]["zoo"], finetune["median"]["transformers"]
    out.append(
        {
            "what": "fine-tuning throughput",
            "zoo": f"{z['samples_per_s']:.1f} samples/s",
            "peer": f"{t['samples_per_s']:.1f} samples/s",
            "value": z["samples_per_s"] / t["samples_per_s"],
            "unit": "x",
            "target": 1.3,
        }
    )
    out.append(
        {
            "what": "fine-tuning peak RSS (zoo / peer, lower is leaner)",
            "zoo": f"{z['peak_rss_mib']:.0f} MiB",
            "peer": f"{t['peak_rss_mib']:.0f} MiB",
            "value": z["peak_rss_mib"] / t["peak_rss_mib"],
            "unit": "ratio",
            "target": 1.0,
            "lower_is_better": True,
        }
    )
    out.append(
        {
            "what": "fine-tuned accuracy / macro-F1",
            "zoo": f"{z['accuracy']:.3f} / {z['macro_f1']:.3f}",
            "peer": f"{t['accuracy']:.3f} / {t['macro_f1']:.3f}",
            "value": 100 * (z["accuracy"] - t["accuracy"]),
            "unit": "pts",
            "target": None,
        }
    )
    exported = finetune.get("exported")
    if exported:
        f, q = exported["onnx_fp32"], exported["onnx_int8"]
        out.append(
            {
                "what": "int8 accuracy vs fp32 (fine-tuned, exported)",
                "zoo": f"int8 {q['accuracy']:.3f}",
                "peer": f"fp32 {f['accuracy']:.3f}",
                "value": 100 * (q["accuracy"] - f["accuracy"]),
                "unit": "pts",
                "target": -0.5,
            }
        )
        if "int8" in exported:
            i = exported["int8"]
            out.append(
                {
                    "what": "int8 agreement with fp32 on the test texts (fine-tuned, exported)",
                    "zoo": f"{i['method']}, {i['fp32_nodes']} fp32 nodes",
                    "peer": "fp32",
                    "value": i["test_agreement"],
                    "unit": "%",
                    "target": 0.99,
                }
            )
    return out


def markdown(inference: dict, finetune: dict, table: list[dict]) -> str:
    settings = finetune["settings"]
    lines = [
        f"Machine: {inference['cpu']}; torch {inference['torch']}, onnxruntime {inference['onnxruntime']}. "
        f"Inference: MiniLM-L6, length {inference['results'][0]['length']}, {inference['threads']} thread(s), "
        f"median of {inference['rounds']} interleaved calls (load average {inference['load_average_1m']:.1f}). "
        f"Fine-tuning: {finetune['data']}, {settings['epochs']} epoch, batch 32, max length 128, "
        f"{settings['threads']} thread(s), median of {settings['repeats']}.",
        "",
        "Speed-ups are peer time / zoo time: higher is faster.",
        "",
        "| what | zoo | peer | zoo vs peer | target | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for row in table:
        value, target, unit = row["value"], row["target"], row["unit"]
        shown = {
            "x": f"{value:.2f}x",
            "%": f"{value:.1%}" if value > 0.9 else f"{value:.0%}",
            "pts": f"{value:+.1f} pts",
            "ratio": f"{value:.2f}",
        }[unit]
        if target is None:
            goal, met = "", ""
        else:
            goal = {
                "x": f">= {target:.2f}x",
                "%": f">= {target:.0%}",
                "pts": f">= {target:+.1f} pts",
                "ratio": f"{'<=' if row.get('lower_is_better') else '>='} {target:.2f}",
            }[unit]
            met = "yes" if (value <= target if row.get("lower_is_better") else value >= target) else "no"
        lines.append(f"| {row['what']} | {row['zoo']} | {row['peer']} | {shown} | {goal} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="10 rounds, 300 tweets: a smoke run")
    parser.add_argument("--reuse", action="store_true", help="only rebuild the table from results/*.json")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.train_size = 10, 300
    threads = ["--threads", str(args.threads)] if args.threads else []
    if not args.reuse:
        run("inference.py", "--rounds", str(args.rounds), *threads)
        run(
            "finetune.py",
            "--train-size",
            str(args.train_size),
            "--test-size",
            str(max(100, args.train_size // 3)),
            *threads,
        )
    inference = json.loads((RESULTS / "inference.json").read_text())
    finetune = json.loads((RESULTS / "finetune.json").read_text())
    table = rows(inference, finetune)
    text = markdown(inference, finetune, table)
    (RESULTS / "summary.json").write_text(json.dumps({"rows": table, "markdown": text}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
