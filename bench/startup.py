"""Start-up time of the CLI: `zoo --help` and `zoo parts` against a bare `python -c "import click"`.

Runs each command N times, interleaved so background load hits all alike, and reports the median wall
time and its ratio to the baseline (goal: `zoo --help` <= 3x). Writes bench/results/startup.json.

    python bench/startup.py [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from zoo import __version__, io

GOAL = 3.0
RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"


def zoo_command() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "zoo"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    zoo = zoo_command()
    commands = {
        'python -c "import click"': [sys.executable, "-c", "import click"],
        "zoo --help": [*zoo, "--help"],
        "zoo parts": [*zoo, "parts"],
        "zoo plugins": [*zoo, "plugins"],
    }
    for argv in commands.values():  # warm the file cache and .pyc files once
        timed(argv, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            times[name].append(timed(argv, env))
    medians = {name: statistics.median(t) for name, t in times.items()}
    baseline = medians['python -c "import click"']
    rows = {
        name: {"median_ms": round(1000 * m, 1), "ratio": round(m / baseline, 2)}
        for name, m in medians.items()
    }
    plugins = sorted(ep.name for ep in metadata.entry_points(group="zoo"))
    print(f"{'command':<28}{'median ms':>12}{'vs click':>10}")
    for name, row in rows.items():
        print(f"{name:<28}{row['median_ms']:>12.1f}{row['ratio']:>9.2f}x")
    ok = rows["zoo --help"]["ratio"] <= GOAL
    print(
        f"third-party plugins installed: {', '.join(plugins) or 'none'}; runs: {args.runs}; "
        f"goal zoo --help <= {GOAL:.0f}x: {'met' if ok else 'MISSED'}"
    )
    io.write_json(
        RESULTS,
        {
            "benchmark": "startup",
            "zoo_version": __version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "runs": args.runs,
            "plugins": plugins,
            "commands": rows,
            "goal_ratio": GOAL,
            "goal_met": ok,
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
