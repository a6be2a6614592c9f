"""The whole CLI chain on a generated 1-5 star data set, as zoo's CI runs it (.ci/run):

    zoo build --head ordinal -> finetune -> evaluate --json -> predict -> export --onnx -> predict on the export

Every command must exit 0; evaluate must report MAE and QWK; the export's predictions must equal the torch
model's. Needs zoo-ordinal installed. Usage: python examples/zoo-ordinal/ci_end_to_end.py [WORK_DIR]
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo_ordinal import stars

TINY = [
    "--d-model",
    "32",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--vocab-size",
    "100",
    "--max-length",
    "16",
]
TRAIN = ["--epochs", "10", "--lr", "1e-2", "--batch-size", "16", "--patience", "10", "-q"]
MAX_MAE = 0.6  # the tiny model reaches about 0.2 on this data; a broken loss or rank decoding stays near 1


def zoo(*args) -> str:
    command = [sys.executable, "-m", "zoo", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(
            f"FAILED (exit {result.returncode}): zoo {' '.join(map(str, args))}\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def predictions(model, data) -> list[str]:
    return [
        json.loads(line)["label"] for line in zoo("predict", model, "--file", data, "--json").splitlines()
    ]


def main(work: Path) -> None:
    start = time.perf_counter()
    train, dev, test = (
        stars.write(work / f"{name}.csv", rows, seed)
        for name, rows, seed in (("train", 400, 0), ("dev", 100, 1), ("test", 100, 2))
    )
    zoo("build", "--arch", "transformer", "--head", "ordinal", *TINY, "-o", work / "m")
    zoo("finetune", work / "m", "--train", train, "--eval", dev, *TRAIN, "-o", work / "ft")
    metrics = json.loads(zoo("evaluate", work / "ft", "--data", test, "--json"))
    assert metrics["task"] == "ordinal" and {"mae", "qwk", "accuracy"} <= metrics.keys(), metrics.keys()
    assert metrics["mae"] < MAX_MAE, f"MAE {metrics['mae']:.3f} on the test set; expected below {MAX_MAE}"
    torch_labels = predictions(work / "ft", test)
    zoo("export", work / "ft", "--onnx", "-o", work / "out")
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    assert manifest["task"] == "ordinal", manifest["task"]
    onnx_labels = predictions(work / "out", test)
    assert onnx_labels == torch_labels, "the ONNX export's predictions differ from the torch model's"
    onnx_metrics = json.loads(zoo("evaluate", work / "out", "--data", test, "--json"))
    assert abs(onnx_metrics["mae"] - metrics["mae"]) < 1e-9, (onnx_metrics["mae"], metrics["mae"])
    print(
        f"zoo-ordinal end to end: test (n={metrics['n']}) MAE {metrics['mae']:.3f}  QWK {metrics['qwk']:.3f}  "
        f"accuracy {metrics['accuracy']:.3f}; ONNX predictions = torch on all {len(onnx_labels)} rows "
        f"({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="zoo-ordinal-") as tmp:
            main(Path(tmp))
