"""Static (calibrated) int8 in QDQ form: activation ranges fixed from real calibration text.

Weights are int8 per output channel; activations uint8 with one range per tensor, found by running the
fp32 graph on the calibration batches and reducing what it saw with one of three methods:

- ``minmax``: the full observed range (nothing clipped, coarse steps when a channel has outliers);
- ``percentile``: the range that holds 99.999% of the values (outliers clipped);
- ``entropy``: the range whose int8 histogram is closest (KL divergence) to the fp32 one.

onnxruntime has no QDQ form of its com.microsoft.Attention node, so attention stays fp32 here; MatMul
(projections, feed-forward, classifier) and the embedding Gathers are quantised.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .onnx_export import quiet

METHODS = ("minmax", "percentile", "entropy")


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over fixed-shape batches (the histogram methods stack
    every batch of a tensor, so all must have one shape: rows padded to the longest, remainder dropped)."""

    def __init__(self, batches: Sequence[tuple[np.ndarray, np.ndarray]], rows: int = 16):
        ids = [row for batch, _ in batches for row in batch]
        masks = [row for _, mask in batches for row in mask]
        length = max(len(r) for r in ids)
        pad = int(batches[0][0][batches[0][1] == 0][0]) if (batches[0][1] == 0).any() else 0
        full_ids = np.full((len(ids), length), pad, dtype=np.int64)
        full_mask = np.zeros((len(ids), length), dtype=np.int64)
        for i, (row, mask) in enumerate(zip(ids, masks)):
            full_ids[i, : len(row)], full_mask[i, : len(mask)] = row, mask
        rows = min(rows, len(ids))
        count = max(1, len(ids) // rows)
        self.feeds = iter(
            [
                {
                    "input_ids": full_ids[i * rows : (i + 1) * rows],
                    "attention_mask": full_mask[i * rows : (i + 1) * rows],
                }
                for i in range(count)
            ]
        )

    def get_next(self):
        return next(self.feeds, None)

    def rewind(self):  # part of the protocol; each quantisation builds a fresh reader
        pass


def quantize_static_qdq(
    source: Path, target: Path, batches, method: str, *, exclude: Sequence[str] = ()
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    with quiet(), contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
        quantize_static(
            str(source),
            str(target),
            _Reader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
            op_types_to_quantize=["MatMul", "Gather"],
            nodes_to_exclude=list(exclude),
            extra_options={"MatMulConstBOnly": True, "CalibPercentile": 99.999},
        )
