"""Parity: run an exported model and the eager model on shapes the export never traced, compare outputs.

The export traces at ``trace_inputs`` (batch 2, no padding). The probes differ from it in batch size
(1, 3, 4), in sequence length (short, medium, long) and in padding (rows of several real lengths,
down to a single real token), so a graph that baked in a traced shape or ignores the mask fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> logits


@dataclass
class Probe:
    name: str
    input_ids: np.ndarray  # int64 (B, S)
    attention_mask: np.ndarray  # int64 (B, S); 0 marks padding

    @property
    def padded_rows(self) -> int:
        return int((self.attention_mask == 0).any(axis=1).sum())


def _batch(rng: np.random.Generator, lengths: list[int], seq: int, vocab_size: int, pad_id: int) -> tuple:
    low = 1 if vocab_size > 1 else 0
    ids = rng.integers(low, vocab_size, size=(len(lengths), seq), dtype=np.int64)
    mask = (np.arange(seq)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    ids[mask == 0] = pad_id
    return ids, mask


def trace_lengths(max_length: int) -> tuple[int, int]:
    """(batch, sequence) the exporter traces with: neither 1 (exporters specialise on 1) nor a probe shape."""
    return 2, max(2, min(9, max_length))


def trace_inputs(
    vocab_size: int, max_length: int, pad_id: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    batch, seq = trace_lengths(max_length)
    return _batch(np.random.default_rng(seed), [seq] * batch, seq, vocab_size, pad_id)


def probes(vocab_size: int, max_length: int, pad_id: int = 0, seed: int = 1) -> list[Probe]:
    """Batch 1 short; batch 3 medium with a padded row; batch 4 long with rows down to one real token."""
    rng = np.random.default_rng(seed)
    long = min(max_length, 64)
    short, medium = min(5, long), min(13, long)
    specs = [
        ("batch1-short", [short], short),
        ("batch3-medium-padded", [medium, max(1, medium // 2), medium], medium),
        ("batch4-long-padded", [long, max(1, long // 2), 1, max(1, long - 1)], long),
    ]
    return [Probe(name, *_batch(rng, lengths, seq, vocab_size, pad_id)) for name, lengths, seq in specs]


def compare(candidate: np.ndarray, reference: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Max abs and rel diff, and whether |c - r| <= atol + rtol·|r| everywhere (numpy.allclose's rule).

    The relative diff is taken where |r| > atol only: near zero it measures noise, not error.
    """
    candidate = np.asarray(candidate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if candidate.shape != reference.shape:
        return {
            "max_abs_diff": None,
            "max_rel_diff": None,
            "ok": False,
            "error": f"shape {list(candidate.shape)}, expected {list(reference.shape)}",
        }
    finite = np.isfinite(reference)
    if not np.array_equal(finite, np.isfinite(candidate)) or not np.array_equal(
        candidate[~finite], reference[~finite], equal_nan=True
    ):
        return {"max_abs_diff": None, "max_rel_diff": None, "ok": False, "error": "non-finite values differ"}
    diff = np.abs(candidate - reference)[finite]
    ref = np.abs(reference[finite])
    big = ref > atol
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff[big] / ref[big]).max()) if big.any() else 0.0
    ok = bool(np.all(diff <= atol + rtol * ref))
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel, "ok": ok}


def check(
    run: Runner, references: list[tuple[Probe, np.ndarray]], atol: float, rtol: float
) -> dict[str, Any]:
    """Run ``run`` on every probe; the report lists each shape tested and ``passed`` for all of them."""
    shapes = []
    for probe, reference in references:
        try:
            result = compare(run(probe.input_ids, probe.attention_mask), reference, atol, rtol)
        except Exception as exc:  # a graph that cannot run a shape fails that shape, with the reason
            result = {
                "max_abs_diff": None,
                "max_rel_diff": None,
                "ok": False,
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            }
        shapes.append(
            {
                "name": probe.name,
                "shape": list(probe.input_ids.shape),
                "padded_rows": probe.padded_rows,
                **result,
            }
        )
    return {"atol": atol, "rtol": rtol, "passed": all(s["ok"] for s in shapes), "shapes": shapes}


def worst(report: dict[str, Any]) -> str:
    """One phrase naming the worst shape of a failed report, for an error message."""
    failed = [s for s in report["shapes"] if not s["ok"]]
    if not failed:
        return "all shapes match"
    s = max(failed, key=lambda s: -1 if s["max_abs_diff"] is None else s["max_abs_diff"])
    where = f"batch {s['shape'][0]} x {s['shape'][1]} ({s['name']})"
    if s.get("error"):
        return f"{s['error']} at {where}"
    return f"max abs diff {s['max_abs_diff']:.3g} at {where}"
