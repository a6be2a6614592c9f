"""bench/run.py's table: speed-ups are peer time / zoo time, and each target is judged the right way round."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH_RUN = Path(__file__).resolve().parents[1] / "bench" / "run.py"


def _bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH_RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inference(peer_ms: float, zoo_ms: dict[str, float]) -> dict:
    results = [
        {
            "runner": "transformers eager (sdpa)",
            "batch": 1,
            "length": 128,
            "median_ms": peer_ms,
            "speedup_vs_transformers": 1.0,
            "gflops_per_s": 2.87 / peer_ms * 1e3,
        }
    ]
    results += [
        {
            "runner": name,
            "batch": 1,
            "length": 128,
            "median_ms": ms,
            "speedup_vs_transformers": peer_ms / ms,
            "gflops_per_s": 2.87 / ms * 1e3,
        }
        for name, ms in zoo_ms.items()
    ]
    return {
        "results": results,
        "matmul_peak_gflops_per_s": 100.0,
        "cpu": "test CPU, 2 physical cores",
        "torch": "t",
        "onnxruntime": "o",
        "threads": 1,
        "rounds": 3,
        "load_average_1m": 0.0,
    }


def _finetune(zoo_rss: float) -> dict:
    side = {"samples_per_s": 10.0, "peak_rss_mib": 1000.0, "accuracy": 0.70, "macro_f1": 0.65}
    return {
        "median": {"zoo": {**side, "samples_per_s": 14.0, "peak_rss_mib": zoo_rss}, "transformers": side},
        "settings": {"epochs": 1, "threads": 1, "repeats": 1},
        "data": "tweets",
        "exported": {
            "onnx_fp32": {"accuracy": 0.700, "macro_f1": 0.6},
            "onnx_int8": {"accuracy": 0.694, "macro_f1": 0.6},
        },
    }


def test_speed_ups_and_verdicts():
    run = _bench_run()
    inference = _inference(40.0, {"zoo eager": 40.0, "zoo ONNX fp32": 30.0, "zoo ONNX int8": 16.0})
    table = {row["what"]: row for row in run.rows(inference, _finetune(zoo_rss=1100.0))}
    assert table["ONNX fp32 inference, batch 1"]["value"] == 40.0 / 30.0
    assert table["ONNX int8 inference, batch 1"]["value"] == 2.5
    assert (
        abs(table["ONNX fp32 GFLOP/s, batch 1, vs fp32 matmul peak"]["value"] - 2.87 / 30.0 * 1e3 / 100)
        < 1e-12
    )
    assert abs(table["fine-tuning throughput"]["value"] - 1.4) < 1e-12
    assert abs(table["int8 accuracy vs fp32 (fine-tuned, exported)"]["value"] + 0.6) < 1e-9
    lines = {
        line.split(" | ")[0].lstrip("| "): line
        for line in run.markdown(inference, _finetune(1100.0), list(table.values())).splitlines()
        if line.startswith("| ")
    }
    assert lines["eager inference, batch 1"].endswith("| 1.00x | >= 1.00x | yes |")
    assert lines["ONNX fp32 inference, batch 1"].endswith("| 1.33x | >= 1.25x | yes |")
    assert lines["ONNX int8 inference, batch 1"].endswith("| 2.50x | >= 3.00x | no |")
    assert lines["fine-tuning peak RSS (zoo / peer, lower is leaner)"].endswith("| 1.10 | <= 1.00 | no |")
    assert lines["int8 accuracy vs fp32 (fine-tuned, exported)"].endswith("| -0.6 pts | >= -0.5 pts | no |")
