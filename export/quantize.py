"""Dynamic int8 quantisation with onnxruntime, checked by how often its predictions agree with fp32.

Weights of MatMul/Gather (embeddings) become int8; activations are quantised on the fly. Per-channel
scales are tried first (they usually keep more accuracy); per-tensor is the fallback when per-channel
fails or agrees less.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .onnx_export import quiet

Batches = list[tuple[np.ndarray, np.ndarray]]


def agreement(run_a: Callable, run_b: Callable, batches: Batches, task) -> dict[str, Any]:
    """How often two runners give the same answers over ``batches``, as the model's task (a zoo.tasks.Task)
    compares them: {"agreement", "compared", "rule"}."""
    return task.agreement([(run_a(ids, mask), run_b(ids, mask), mask) for ids, mask in batches])


def quantize_int8(source: Path, target: Path, *, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(str(source), str(target), per_channel=per_channel, weight_type=QuantType.QInt8)


def best_int8(source: Path, target: Path, fp32_run: Callable, make_run: Callable[[Path], Callable],
              batches: Batches, task, min_agreement: float) -> dict[str, Any]:
    """Quantise per-channel, and per-tensor too unless per-channel already reaches ``min_agreement``;
    keep the variant that agrees more. Returns the report (agreement, sizes, the variant kept)."""
    tried: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for per_channel in (True, False):
        candidate = target.with_name(f".{'channel' if per_channel else 'tensor'}.{target.name}")
        try:
            quantize_int8(source, candidate, per_channel=per_channel)
            result = {"per_channel": per_channel, **agreement(fp32_run, make_run(candidate), batches, task)}
        except Exception as exc:
            tried.append({"per_channel": per_channel, "error": f"{type(exc).__name__}: {exc}"})
            candidate.unlink(missing_ok=True)
            continue
        tried.append(result)
        if best is None or result["agreement"] > best["agreement"]:
            if best is not None:
                best["file"].unlink(missing_ok=True)
            best = {**result, "file": candidate}
        else:
            candidate.unlink(missing_ok=True)
        if best["agreement"] >= min_agreement:
            break
    if best is None:
        raise RuntimeError("int8 quantisation failed: " + "; ".join(t["error"] for t in tried))
    best["file"].replace(target)
    size, fp32_size = target.stat().st_size, source.stat().st_size
    return {
        "file": target.name, "per_channel": best["per_channel"], "agreement": best["agreement"],
        "compared": best["compared"], "rule": best["rule"], "min_agreement": min_agreement,
        "passed": best["agreement"] >= min_agreement, "bytes": size, "fp32_bytes": fp32_size,
        "size_ratio": size / fp32_size, "tried": tried,
    }


def generated_batches(vocab_size: int, max_length: int, pad_id: int, rows: int = 256, batch: int = 32,
                      seed: int = 7) -> Batches:
    """A held-out sample when no calibration data is given: random ids, lengths 4..64, padded."""
    rng = np.random.default_rng(seed)
    out = []
    longest = min(64, max_length)
    for start in range(0, rows, batch):
        lengths = rng.integers(min(4, longest), longest + 1, size=min(batch, rows - start))
        seq = int(lengths.max())
        ids = rng.integers(1 if vocab_size > 1 else 0, vocab_size, size=(len(lengths), seq), dtype=np.int64)
        mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
        ids[mask == 0] = pad_id
        out.append((ids, mask))
    return out


def text_batches(tokenizer, texts: list[str], max_length: int, batch: int = 32) -> Batches:
    from zoo.tokenizer import encode

    return [encode(tokenizer, texts[i:i + batch], max_length=max_length) for i in range(0, len(texts), batch)]
