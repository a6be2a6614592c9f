"""int8 quantisation with onnxruntime, judged by how often its predictions agree with fp32.

Several methods are tried on the same graph (``DEFAULT_METHODS``, in order): dynamic quantisation
(activations quantised on the fly at each call, with one scale per token where a MatMul's rows spread,
``pertoken.py``) and static QDQ with ranges calibrated on real text (``calibrate.py``), all with int8 weights
per output channel, chosen by GPTQ for each layer's output on the calibration text (``gptq.py``, the "+gptq"
methods, the default) or rounded to nearest. The first that meets the agreement bar is kept. When none does,
the best one gets mixed precision: the nodes whose quantisation hurts most stay fp32, one more at a time,
until the bar holds (``sensitivity.py``); the report lists them and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_export import quiet

Batches = list[tuple[np.ndarray, np.ndarray]]


def agreement(
    run_a: Callable, run_b: Callable, batches: Batches, task, targets: list[Any] | None = None
) -> dict[str, Any]:
    """How often two runners give the same answers over ``batches``, as the model's task (a zoo.tasks.Task)
    compares them: {"agreement", "compared", "rule"}; ``targets``: the labels of the batches' sequences."""
    outputs = [(run_a(ids, mask), run_b(ids, mask), mask) for ids, mask in batches]
    return task.labelled_agreement(outputs, targets) if targets is not None else task.agreement(outputs)


# Every int8 method. "per-token": one activation scale per row of each MatMul input whose rows spread
# (pertoken.py); "dynamic": one scale per call everywhere (onnxruntime's dynamic quantisation); "+outliers":
# the few outlier input channels of each MatMul are multiplied in fp32 beside the int8 product (outliers.py);
# "+gptq": the int8 weights are chosen for each layer's output on the calibration text (GPTQ, gptq.py) instead
# of rounded to nearest, with the same scales (so the same graph and speed).
ROUNDED_METHODS = (
    "per-token",
    "dynamic",
    "dynamic+outliers",
    "per-token+outliers",
    "static-minmax+outliers",
    "static-percentile+outliers",
    "static-entropy+outliers",
)
GPTQ = "+gptq"
METHODS = (*(m + GPTQ for m in ROUNDED_METHODS), *ROUNDED_METHODS)
# Tried in this order by default; the first that meets the bar is kept, and when none does, mixed precision
# starts from the best of them. Plain "dynamic" is 4% faster than "per-token" but is "per-token" without the
# per-row scales that keep BERT-family answers (bench/NOTES.md #34, #40: 98.9% against 99.1% of the
# fine-tuning benchmark's test texts); static QDQ is slower and moved the demo's logits more (#23, #41, where
# it passed the check by luck and lost a point of test accuracy): both only when asked for. Each rounds its
# weights by GPTQ: the same graph and speed, and less logit error than rounding to nearest on both fine-tuned
# MiniLMs (5-12% in 8 of their 9 per-token measurements, bench/NOTES.md G2-G3; weights alone 0.82% -> 0.48%,
# G1); the methods without "+gptq" round to nearest.
DEFAULT_METHODS = ("per-token+gptq", "dynamic+outliers+gptq", "per-token+outliers+gptq")
# Embedding tables smaller than this (positions, token types) stay fp32: int8 saves little there, and on
# fine-tuned MiniLM the position table alone moved 0.5% of held-out predictions (bench/NOTES.md).
SMALL_TABLE = 1 << 20
# True: the word-embedding table too (every lookup table). A lookup costs no arithmetic, so fp32 costs file size
# only, but MiniLM's int8 file grows from 23 MB to 59 MB (90 MB all fp32) for 2-9% less logit error on the two
# fine-tuned MiniLMs (bench/NOTES.md G5), within the noise of their agreement: the table stays int8.
FP32_EMBEDDINGS = False


def fp32_table(size: int) -> bool:
    """Whether an embedding table of ``size`` values stays fp32."""
    return FP32_EMBEDDINGS or size < SMALL_TABLE


def table_precision(path: Path) -> str:
    """ "int8" if the file looks any embedding table up in int8, else "fp32"."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    int8 = {
        i.name for i in graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    }
    return "int8" if any(n.op_type == "Gather" and n.input[0] in int8 for n in graph.node) else "fp32"


# An untrained head's predictions are near-ties, so argmax agreement says little about int8 there, and its
# logits vary so little across texts that their relative error is no fair gate either (pretrained MiniLM with
# a fresh cls + pooler head: 10.5% even with 11 nodes fp32). Such a model gets the first method, ungated, and
# the report gives its logit error.


def logit_error(run_a: Callable, run_b: Callable, batches: Batches) -> float:
    """Mean |a - b| over the standard deviation of a's logits across the texts (0: identical)."""
    a, b = [], []
    for ids, mask in batches:
        a.append(run_a(ids, mask).reshape(len(ids), -1))
        b.append(run_b(ids, mask).reshape(len(ids), -1))
    if not a or any(x.shape[1] != a[0].shape[1] for x in a):  # per-token logits of varying length
        a, b = [x.reshape(-1, 1) for x in a], [x.reshape(-1, 1) for x in b]
    fa, fb = np.concatenate(a), np.concatenate(b)
    return float(np.abs(fa - fb).mean() / max(float(fa.std(axis=0).mean()), 1e-6))


def quantize_dynamic_int8(source: Path, target: Path, exclude: Sequence[str]) -> None:
    """onnxruntime's dynamic int8 (weights per output channel, activations per call) of ``source``, the nodes
    named in ``exclude`` left fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(
            str(source), str(target), per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=exclude
        )


def quantize_int8(
    source: Path,
    target: Path,
    method: str = "dynamic",
    *,
    calibration: Batches | None = None,
    exclude: Sequence[str] = (),
    per_token_inputs: set[str] | None = None,
    rounded: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """Write ``source`` quantised with ``method`` (its "+outliers" suffix is ignored here: ``source`` is
    already split), leaving the nodes named in ``exclude`` and the fp32 outlier products in fp32. For
    "per-token": the MatMuls reading ``per_token_inputs`` get per-token scales (default: those whose rows
    spread on ``calibration``, pertoken.py); returns the MatMuls that did. For "+gptq": the weights are
    rounded by GPTQ on ``calibration`` (or given: ``rounded``, from gptq.rounded_weights)."""
    import onnx

    from .outliers import MARK

    if method.endswith(GPTQ):
        from .gptq import rounded_weights, write_rounded

        if rounded is None:
            rounded = rounded_weights(source, calibration or [])
        if per_token_inputs is None and method.startswith("per-token"):
            from .pertoken import spiky_inputs

            per_token_inputs = spiky_inputs(source, calibration or [])  # of the graph as trained
        graph = target.with_name(f".gptq.{target.name}")
        try:
            # static QDQ has no form of com.microsoft.Attention: it stays fp32, with its own weights
            write_rounded(
                source, graph, rounded, exclude, ("Attention",) if method.startswith("static") else ()
            )
            return quantize_int8(
                graph,
                target,
                method.removesuffix(GPTQ),
                calibration=calibration,
                exclude=exclude,
                per_token_inputs=per_token_inputs,
            )
        finally:
            graph.unlink(missing_ok=True)

    graph = onnx.load(str(source), load_external_data=False).graph
    small = {i.name for i in graph.initializer if fp32_table(int(np.prod(i.dims)))}
    exclude = [
        *exclude,
        *(n.name for n in graph.node if MARK in n.name or (n.op_type == "Gather" and n.input[0] in small)),
    ]
    kind = method.removesuffix("+outliers")
    if kind == "dynamic":
        quantize_dynamic_int8(source, target, exclude)
        return []
    if kind == "per-token":
        from .pertoken import quantize_per_token, spiky_inputs

        if per_token_inputs is None:
            per_token_inputs = spiky_inputs(source, calibration or [])
        return quantize_per_token(source, target, per_token_inputs, exclude)
    from .calibrate import quantize_static_qdq

    quantize_static_qdq(source, target, calibration, kind.removeprefix("static-"), exclude=exclude)
    return []


def best_int8(
    source: Path,
    target: Path,
    fp32_run: Callable,
    make_run: Callable[[Path], Callable],
    batches: Batches,
    task,
    min_agreement: float,
    *,
    calibration: Batches | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    trained: bool = True,
    targets: list[Any] | None = None,
) -> dict[str, Any]:
    """Quantise ``source`` into ``target`` with the first of ``methods`` that meets ``min_agreement`` on
    ``batches`` (or, when none does, the best one with its most harmful nodes kept fp32); returns the report.
    ``calibration``: the batches static ranges and sensitivities come from (default ``batches``).
    ``trained=False``: an untrained head: the first method is kept without a gate (see above).
    ``targets``: the labels of ``batches``' sequences, for a task that scores both runs
    (``Task.labelled_agreement``)."""
    from zoo.errors import unknown

    from .sensitivity import keep_fp32

    for method in methods:
        if method not in METHODS:
            raise unknown("int8 method", method, METHODS)
    calibration = calibration or batches
    work = _Trials(source, target, fp32_run, make_run, batches, calibration, task, min_agreement, trained)
    work.targets = targets
    for method in methods:
        if work.attempt(method).get("passed"):
            break
    best = work.best()
    if best is None:
        raise RuntimeError("int8 quantisation failed: " + "; ".join(t["error"] for t in work.tried))
    for start in [] if best["passed"] else work.starting_points():
        if keep_fp32(work, start):
            break
    return work.finish(work.best() or best)  # best() is never None again once it was not


class _Trials:
    """Quantisations tried so far: each one's file and its score against fp32 on the held-out batches."""

    def __init__(
        self, source, target, fp32_run, make_run, batches, calibration, task, min_agreement, trained
    ):
        self.source, self.target, self.fp32_run, self.make_run = source, target, fp32_run, make_run
        self.batches, self.calibration, self.task = batches, calibration, task
        self.min_agreement, self.trained = min_agreement, trained
        self.targets: list[Any] | None = None  # labels of the check batches' sequences (best_int8)
        self.tried: list[dict[str, Any]] = []
        self.files: dict[int, Path] = {}
        self.outlier_channels: dict[str, list[int]] = {}
        self.spiky: dict[Path, set[str]] = {}  # per graph: the MatMul inputs per-token scales are for
        self.rounded: dict[Path, dict[str, np.ndarray]] = {}  # per graph: its weights rounded by GPTQ

    def graph(self, method: str) -> Path:
        """The fp32 graph ``method`` quantises: ``source``, or for "+outliers" its split form (made once)."""
        if not method.removesuffix(GPTQ).endswith("+outliers"):
            return self.source
        split = self.target.with_name(f".outliers.{self.target.name}")
        if not split.exists():
            from .outliers import channel_maxima, split_outliers

            self.outlier_channels = split_outliers(
                self.source, split, channel_maxima(self.source, self.calibration)
            )
        return split

    def quantize(self, method: str, path: Path, exclude: Sequence[str] = ()) -> list[str]:
        """Write ``path``; returns the MatMuls given per-token scales."""
        graph, inputs = self.graph(method), None
        if method.startswith("per-token"):
            from .pertoken import spiky_inputs

            if graph not in self.spiky:
                self.spiky[graph] = spiky_inputs(graph, self.calibration)
            inputs = self.spiky[graph]
        if method.endswith(GPTQ) and graph not in self.rounded:
            from .gptq import rounded_weights

            self.rounded[graph] = rounded_weights(graph, self.calibration)
        return quantize_int8(
            graph,
            path,
            method,
            calibration=self.calibration,
            exclude=exclude,
            per_token_inputs=inputs,
            rounded=self.rounded.get(graph),
        )

    def attempt(self, method: str, exclude: Sequence[str] = ()) -> dict[str, Any]:
        path = self.target.with_name(f".{len(self.tried)}.{self.target.name}")
        try:
            per_token_nodes = self.quantize(method, path, exclude)
            run = self.make_run(path)
            agreed = agreement(self.fp32_run, run, self.batches, self.task, self.targets)
            result = {
                "method": method,
                "fp32_nodes": list(exclude),
                "per_token_nodes": per_token_nodes,
                **agreed,
                "logit_error": logit_error(self.fp32_run, run, self.batches),
                # what else the task measured (an embedding's mean cosine and ndcg@10 drop)
                "measures": {k: v for k, v in agreed.items() if k not in ("agreement", "compared", "rule")},
            }
        except Exception as exc:
            path.unlink(missing_ok=True)
            result = {"method": method, "fp32_nodes": list(exclude), "error": f"{type(exc).__name__}: {exc}"}
            self.tried.append(result)
            return result
        # no bar (or an untrained head, see above): the first method is kept
        result["passed"] = (
            self.min_agreement <= 0 or not self.trained or result["agreement"] >= self.min_agreement
        )
        self.files[len(self.tried)] = path
        self.tried.append(result)
        return result

    def score(self, result: dict[str, Any]) -> tuple:
        """Passing first, then (among passing) fewer fp32 nodes, then agreement."""
        return (result["passed"], -len(result["fp32_nodes"]) if result["passed"] else 0, result["agreement"])

    def starting_points(self) -> list[dict[str, Any]]:
        """For mixed precision: the best-agreeing dynamic method, then the best static one (slower: the
        attention stays fp32 and every quantised input is a separate node; bench/NOTES.md)."""
        out = []
        for family in (("dynamic", "per-token"), ("static",)):
            done = [r for r in self.tried if "error" not in r and r["method"].startswith(family)]
            if done:
                out.append(max(done, key=self.score))
        return out

    def best(self) -> dict[str, Any] | None:
        done = [r for r in self.tried if "error" not in r]
        return max(done, key=self.score) if done else None

    def finish(self, best: dict[str, Any]) -> dict[str, Any]:
        from .plain import guard_layer_norm_adds

        chosen = self.tried.index(best)
        self.files.pop(chosen).replace(self.target)
        for path in [*self.files.values(), self.target.with_name(f".outliers.{self.target.name}")]:
            path.unlink(missing_ok=True)
        guarded = guard_layer_norm_adds(self.target)
        size, fp32_size = self.target.stat().st_size, self.source.stat().st_size
        measure = "agreement" if self.trained else "logit_error"
        return {
            "file": self.target.name,
            "method": best["method"],
            "per_channel": True,
            "agreement": best["agreement"],
            "compared": best["compared"],
            "rule": best["rule"],
            "logit_error": best["logit_error"],
            "measures": best["measures"],
            "measure": measure,
            "min_agreement": self.min_agreement,
            "passed": best["passed"],
            "fp32_nodes": best.get("why", []),
            "outlier_channels": self.outlier_channels if "+outliers" in best["method"] else {},
            # how the int8 weights were rounded: to nearest, or by GPTQ for each layer's output (gptq.py)
            "weights": "gptq" if best["method"].endswith(GPTQ) else "nearest",
            "embeddings": table_precision(self.target),  # how the word-embedding table is looked up
            "per_token_nodes": best["per_token_nodes"],
            # the file needs no session options: Add -> LayerNormalization is written as Sum (plain.py)
            "session_options": {},
            "layer_norm_sums": guarded,
            "bytes": size,
            "fp32_bytes": fp32_size,
            "size_ratio": size / fp32_size,
            "calibration_rows": sum(len(ids) for ids, _ in self.calibration),
            "tried": [
                {k: v for k, v in t.items() if k not in ("why", "rule", "per_token_nodes")}
                for t in self.tried
            ],
        }


def generated_batches(
    vocab_size: int, max_length: int, pad_id: int, rows: int = 256, batch: int = 32, seed: int = 7
) -> Batches:
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

    return [
        encode(tokenizer, texts[i : i + batch], max_length=max_length) for i in range(0, len(texts), batch)
    ]
