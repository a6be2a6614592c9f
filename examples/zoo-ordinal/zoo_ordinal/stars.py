"""A synthetic 1-5 star data set to try the plugin on (the tests and the CI run use it; no torch, no numpy).

Each text is six words: some "good" words, some "bad" words and filler. Its rating is
3 + (good words) - (bad words), with 0-2 of each, so every rating 1-5 occurs and a small model can learn it.

    python -m zoo_ordinal.stars train.csv --rows 300 --seed 0 [--names bad,poor,ok,good,great]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

GOOD = ("good", "great", "lovely", "excellent")
BAD = ("bad", "awful", "poor", "terrible")
FILLER = ("the", "food", "service", "room", "was", "and", "staff", "view", "price", "quite")
WORDS = 6


def rows(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """``count`` (text, stars) pairs."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        good, bad = rng.randint(0, 2), rng.randint(0, 2)
        words = [rng.choice(GOOD) for _ in range(good)] + [rng.choice(BAD) for _ in range(bad)]
        words += [rng.choice(FILLER) for _ in range(WORDS - len(words))]
        rng.shuffle(words)
        out.append((" ".join(words), 3 + good - bad))
    return out


def write(path: str | Path, count: int, seed: int = 0, names: list[str] | None = None) -> Path:
    """A CSV with columns text,label; ``names`` (lowest first) replace the stars 1-5 by words."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for text, stars in rows(count, seed):
            writer.writerow([text, names[stars - 1] if names else stars])
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", default=None, help="five comma-separated label names, lowest first")
    args = parser.parse_args()
    write(args.path, args.rows, args.seed, args.names.split(",") if args.names else None)
