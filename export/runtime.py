"""Serve an export directory with onnxruntime, tokenizers and numpy only: no torch, no transformers.

model = OnnxModel("out")                      # or OnnxModel("out/model.onnx")
ids, mask = model.encode(["a text", "another"])
logits = model.logits(ids, mask)              # the task's first output: (B, num_labels), (B, S, num_labels)
                                              # per token, or (B, dim) sentence_embedding
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.constants import MANIFEST_NAME, ONNX_NAME, TOKENIZER_NAME
from zoo.errors import ZooError
from zoo.io import read_json
from zoo.threads import requested as requested_threads
from zoo.threads import usable_cpus
from zoo.windows import LongText

if TYPE_CHECKING:
    from zoo.tasks import Task

INPUT_NAMES, OUTPUT_NAME = ("input_ids", "attention_mask"), "logits"  # OUTPUT_NAME: the default task's output
# onnxruntime's fused SkipLayerNormalization CPU kernel measured 4-5x slower than the Add +
# LayerNormalization it replaces (MiniLM, batch 1, len 128: 4.3 ms vs 1.2 ms per call; bench/NOTES.md).
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads share a core's arithmetic units)."""
    available = usable_cpus()  # affinity and the cgroup CPU quota
    cores = set()
    try:
        block: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            if not line.strip():
                if "core id" in block:
                    cores.add((block.get("physical id", "0"), block["core id"]))
                block = {}
                continue
            key, _, value = line.partition(":")
            block[key.strip()] = value.strip()
    except OSError:
        pass
    return max(1, min(available, len(cores) or available))


def session_options(threads: int | None = None, spinning: bool = False) -> Any:
    """``threads``, else the command's --threads, else one intra-op thread per usable physical core.
    Idle threads sleep unless ``spinning``: busy-waiting threads take the cores from the working ones
    whenever anything else shares them (2 spinning threads predicted 1.9x slower than 2 sleeping ones on
    a loaded 2-core machine; bench/NOTES.md). ``spinning`` threads spin between the operators of a call
    (no wake-up per operator) and sleep once the call returns."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or requested_threads() or physical_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    if spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    else:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a JSON object")
    serve, labels = data.get("serve"), data.get("labels")
    if serve is not None and not (
        isinstance(serve, str)
        and serve.endswith(".onnx")
        and Path(serve).name == serve
        and not serve.startswith(".")
    ):
        raise ZooError(f"{path}: 'serve' must name a .onnx file inside the export directory, got {serve!r}")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ZooError(f"{path}: 'labels' must be a list of strings")
    for key in ("max_length", "max_positions", "num_labels"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ZooError(f"{path}: '{key}' must be a positive integer, got {value!r}")
    if data.get("task") is not None and not isinstance(data["task"], str):
        raise ZooError(f"{path}: 'task' must be a string")
    return data


def manifest_task(manifest: dict[str, Any], directory: Path) -> Task:
    """The export's task object: the recorded 'plugin:name' part, or (older exports) the task's name or
    the first wave's label format; classification when the manifest names none."""
    from zoo.tasks import LEGACY_LABEL_FORMATS, load_task

    recorded = (manifest.get("model") or {}).get("task") if isinstance(manifest.get("model"), dict) else None
    name = manifest.get("task") or "classification"
    ref = recorded if isinstance(recorded, str) else LEGACY_LABEL_FORMATS.get(name, name)
    try:
        return load_task(ref)
    except ZooError as exc:
        raise ZooError(f"{directory / MANIFEST_NAME}: {exc}") from None


def file_failed_check(manifest: dict[str, Any], name: str) -> bool:
    """Whether the manifest records that ``name`` itself failed parity (or int8 agreement)."""
    for section in ("onnx", "optimized", "int8"):
        info = manifest.get(section)
        if isinstance(info, dict) and info.get("file") == name:
            passed = info.get("passed") if section == "int8" else (info.get("parity") or {}).get("passed")
            return passed is False
    return manifest.get("parity_passed") is False


class OnnxModel:
    """An exported model served by onnxruntime. ``path``: an export directory or a .onnx file.

    A directory serves the file its manifest names under "serve" (model.int8.onnx after --quantize),
    unless ``file`` picks another one (e.g. "model.onnx" for the fp32 graph). Loading a file that failed its
    parity or int8 check (kept with --allow-mismatch) prints a warning unless ``warn`` is False.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        file: str | None = None,
        threads: int | None = None,
        spinning: bool = False,
        warn: bool = True,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if path.is_dir():
            directory = path
            self.manifest = read_manifest(directory)
            onnx_file = directory / (file or self.manifest.get("serve") or ONNX_NAME)
        elif path.is_file():
            directory, onnx_file = path.parent, path
            self.manifest = read_manifest(directory)
        else:
            raise ZooError(f"{path}: no such export directory or .onnx file")
        if not onnx_file.is_file():
            raise ZooError(f"{directory}: not an export directory (no {onnx_file.name})")
        if warn and file_failed_check(self.manifest, onnx_file.name):
            print(
                f"zoo: warning: {onnx_file} was exported with --allow-mismatch; its outputs differ from "
                "the trained model beyond tolerance (see manifest.json)",
                file=sys.stderr,
            )
        self.path = onnx_file
        try:
            self.session = ort.InferenceSession(
                str(onnx_file),
                session_options(threads, spinning),
                providers=["CPUExecutionProvider"],
                disabled_optimizers=DISABLED_OPTIMIZERS,
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ZooError(f"{onnx_file}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from None
        self.labels: list[str] | None = self.manifest.get("labels")
        self.task = manifest_task(self.manifest, directory)
        self.num_labels: int | None = self.manifest.get("num_labels")  # the head's size (older exports: None)
        self.output = self.task.output_names[0]  # what logits() returns: the task's first output
        names = tuple(i.name for i in self.session.get_inputs())
        outputs = [o.name for o in self.session.get_outputs()]
        if names != INPUT_NAMES or self.output not in outputs:
            raise ZooError(
                f"{onnx_file}: expected inputs {', '.join(INPUT_NAMES)} and output {self.output}, "
                f"got inputs {', '.join(names)} and outputs {', '.join(outputs)}"
            )
        self.max_length: int = int(self.manifest.get("max_length") or 512)  # where encode() cuts text
        self.max_positions: int = int(self.manifest.get("max_positions") or self.max_length)
        # how texts longer than max_length are read (zoo.inference, zoo serve): as the model was trained
        self.long_text = LongText.from_record(
            (self.manifest.get("tokenizer_settings") or {}).get("long_text"), str(directory / MANIFEST_NAME)
        )
        self.tokenizer = None
        if (directory / TOKENIZER_NAME).is_file():
            from zoo.tokenizer import load_tokenizer

            self.tokenizer = load_tokenizer(directory / TOKENIZER_NAME)

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (input_ids, attention_mask) with the export's tokenizer, cut at max_length."""
        from zoo.tokenizer import encode

        if self.tokenizer is None:
            raise ZooError(f"{self.path.parent}: the export has no {TOKENIZER_NAME}; pass token ids instead")
        return encode(self.tokenizer, texts, pairs, max_length=self.max_length)

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
            raise ZooError(
                f"input_ids and attention_mask must be (batch, sequence) arrays of one shape, "
                f"got {input_ids.shape} and {attention_mask.shape}"
            )
        if input_ids.shape[1] > self.max_positions:
            raise ZooError(
                f"sequence length {input_ids.shape[1]} exceeds the model's {self.max_positions} positions"
            )
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run([self.output], feeds)[0]

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.logits(input_ids, attention_mask)

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, task={self.task.name!r}, labels={self.labels!r})"
