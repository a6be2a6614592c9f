"""Fine-tuning throughput with zoo's default thread count against --threads 1, on this machine as it is
(other jobs included): each setting runs `zoo finetune` in its own process, interleaved, and reports the
samples/s of its one epoch (from metrics.jsonl). Settings are `default`, `N` (--threads N), and any of
them with `+passive` (OMP_WAIT_POLICY=PASSIVE) or `+active`.

    python bench/threads.py                                   # default vs 1, 3 rounds
    python bench/threads.py --settings default 1 default+active 2+passive --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SMALL = [
    "--d-model",
    "64",
    "--num-layers",
    "2",
    "--num-heads",
    "4",
    "--ffn-dim",
    "256",
    "--vocab-size",
    "2000",
    "--max-length",
    "64",
]


def tweets(directory: Path, rows: int) -> Path:
    from zoo.demo import demo_assets, split_tweets, write_splits

    _, source = demo_assets()
    return write_splits(split_tweets(source, rows * 8 // 10, 0, rows // 10), directory / "data")["train"]


def finetune(model: Path, train: Path, out: Path, setting: str, epochs: int) -> float:
    threads, _, wait = setting.partition("+")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if wait:
        env["OMP_WAIT_POLICY"] = wait.upper()
    args = [
        sys.executable,
        "-m",
        "zoo",
        "finetune",
        str(model),
        "--train",
        str(train),
        "-o",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "32",
        "--max-length",
        "64",
        "--overwrite",
        "--quiet",
    ]
    if threads != "default":
        args += ["--threads", threads]
    subprocess.run(args, check=True, env=env)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(r["samples_per_s"] for r in history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["default", "1"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1200, help="Tweets (80%% train).")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    from zoo.threads import cgroup_cpu_quota, default_threads, usable_cpus

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    print(
        f"{cpu}; os.cpu_count() {os.cpu_count()}, usable CPUs {usable_cpus()}, cgroup quota "
        f"{cgroup_cpu_quota()}, default threads {default_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = tweets(tmp, args.rows)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "zoo",
                "build",
                "--arch",
                "transformer",
                "--head",
                "cls",
                *SMALL,
                "-o",
                str(tmp / "m"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        figures: dict[str, list[float]] = {s: [] for s in args.settings}
        for round_ in range(args.rounds):
            for setting in args.settings:
                figures[setting].append(finetune(tmp / "m", train, tmp / "ft", setting, args.epochs))
            print(
                f"round {round_ + 1}: " + "  ".join(f"{s} {v[-1]:.1f}" for s, v in figures.items()),
                flush=True,
            )
    base = statistics.median(figures[args.settings[-1]])
    print(f"median samples/s over {args.rounds} rounds (ratio to '{args.settings[-1]}'):")
    for setting, values in figures.items():
        print(f"  {setting:<16} {statistics.median(values):8.1f}   {statistics.median(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
