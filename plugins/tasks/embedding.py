"""Sentence embeddings: a model's output is one vector per text, compared by cosine similarity.

Targets are columns: a training row (anchor, positive[, negative]) becomes several sequences, and each
sequence's target is the column it came from (0 anchor, 1 positive, 2 hard negative). A batch's sequences
go column by column (every anchor, then every positive, then every negative), as the head's loss takes
them. The loss ranks each anchor's positive against every other candidate in the batch (under torchrun,
every process's batch); evaluation ranks every distinct anchor against every distinct positive
(zoo.retrieval). A scored-pairs file (sentence1, sentence2, score) is evaluated as STS: Spearman and
Pearson correlation of the cosine with the score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo import retrieval as R
from zoo.errors import ZooError
from zoo.tasks import Task, one_line

MIN_MEAN_COSINE = 0.98  # int8 fails outright when its vectors' mean cosine with fp32's is below this
NEIGHBOURS = 10  # the int8 check: ndcg@10 of each text's nearest neighbours
SCALE = 20.0  # the ranking loss's scale (cosine x 20), as in the head
# Column names of a pairs file, by role (the first found wins), and of a scored-pairs (STS) file.
ROLES = {
    "anchor": ("anchor", "query", "question", "sentence1", "text"),
    "positive": ("positive", "document", "passage", "answer", "sentence2", "pair"),
    "negative": ("negative", "hard_negative", "negative_1"),
    "score": ("score", "similarity", "label"),
}


class Embedding(Task):
    named_labels = False
    labelled_int8 = True
    main_metric = "ndcg@10"
    summary_metrics = R.METRICS
    output_names = ("sentence_embedding",)

    def num_labels(self, table, names):
        return None  # the head decides the width of its vectors

    # ---- data -------------------------------------------------------------------------------------
    def read(self, path, *, text_column=None, label_column=None, pair_column=None, encoding=None):
        """anchor (or query), positive[, negative] rows; or sentence1, sentence2, score rows (STS).
        --text-column and --pair-column name the anchor and positive columns, --label-column the score."""
        from zoo.data import Table, read_columns

        cells, lines = read_columns(
            path,
            ROLES,
            optional=("negative", "score"),
            numeric=("score",),
            given={"anchor": text_column, "positive": pair_column, "score": label_column},
            encoding=encoding,
        )
        if cells["negative"] is not None and cells["score"] is not None:
            raise ZooError(
                f"{path}: a file has either a negative column (training triples) or a score column "
                "(scored pairs), not both"
            )
        return Table(
            str(path),
            cells["anchor"],  # type: ignore[arg-type]  # a required column: never None
            cells["positive"],
            cells["score"],
            lines,
            {"negative": cells["negative"]} if cells["negative"] is not None else {},
        )

    def inputs(self, tokenizer, table, max_length):
        """One encoding per text to embed; for a pairs file, per row [anchor, positive(, negative)]."""
        from zoo.tokenizer import encode_rows

        if table.pairs is None:
            return encode_rows(tokenizer, table.texts, None, max_length)
        columns = [table.texts, table.pairs] + (
            [table.columns["negative"]] if "negative" in table.columns else []
        )
        encoded = [encode_rows(tokenizer, list(c), None, max_length) for c in columns]
        return [list(row) for row in zip(*encoded)]

    def targets(self, table, names, num_labels, encodings):
        """Per row, per sequence: (column, text, score), the score None outside STS files."""
        columns = [table.texts, table.pairs or []] + (
            [table.columns["negative"]] if "negative" in table.columns else []
        )
        scores = table.labels or [None] * len(table)
        return [[(c, text, score) for c, text in enumerate(texts)] for *texts, score in zip(*columns, scores)]

    def sequences(self, rows):
        """Column by column: every row's anchor, then every positive, then every negative."""
        if not rows or not isinstance(rows[0], list):
            return list(rows)
        return [row[c] for c in range(len(rows[0])) for row in rows]

    def batch_keys(self, table):
        negatives = table.columns.get("negative") or [None] * len(table)
        return [
            tuple(t for t in row if t is not None)
            for row in zip(table.texts, table.pairs or [None] * len(table), negatives)
        ]

    def labelled(self, table):
        """Pairs (a query and its positive) score int8's retrieval; scored pairs (STS) and texts do not."""
        return table.pairs is not None and table.labels is None

    def check_training(self, config):
        if config.grad_accum > 1:
            raise ZooError(
                f"--grad-accum {config.grad_accum}: the embedding task ranks every anchor against the "
                "whole batch, and accumulation would shrink that pool of negatives; use --grad-accum 1 "
                "and the --batch-size that fits"
            )

    def gather(self, outputs, labels, mask):
        """Every process's embeddings and columns (with gradients), column by column over the global batch."""
        import torch

        from zoo.nn import gather_rows

        every, columns = gather_rows(outputs), gather_rows(labels)
        if every is outputs:
            return outputs, labels, mask
        order = torch.sort(columns, stable=True).indices  # every process's anchors, then positives...
        return every[order], columns[order], None

    # ---- outputs ----------------------------------------------------------------------------------
    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        """Distinct anchors (column 0) ranked against the distinct positives (column 1), the i-th anchor's
        positive being the i-th; loss is the ranking loss of the whole set as one batch. Scored pairs: STS."""
        items = list(targets) if isinstance(targets, list) else np.asarray(targets).reshape(-1).tolist()
        flat = [t if isinstance(t, tuple) else (int(t), None, None) for t in items]  # the kit's bare columns
        columns = np.asarray([t[0] for t in flat], dtype=np.int64)
        x = np.stack(outputs).astype(np.float64) if len(outputs) else np.zeros((0, 1))
        anchors, positives, candidates = x[columns == 0], x[columns == 1], x[columns != 0]
        n = min(len(anchors), len(positives))
        scores_given = [t[2] for t in flat if t[0] == 0]
        if scores_given and scores_given[0] is not None:
            return R.sts_metrics(anchors[:n], positives[:n], np.asarray(scores_given[:n], dtype=np.float64))
        keys = [t[1] for t in flat]
        akeys, pkeys = (
            [k for k, c in zip(keys, columns) if c == 0],
            [k for k, c in zip(keys, columns) if c == 1],
        )
        known = None not in akeys[:n] and None not in pkeys[:n]
        metrics = R.pair_retrieval(
            anchors[:n], positives[:n], akeys[:n] if known else None, pkeys[:n] if known else None
        )
        scores = SCALE * R.cosine_scores(anchors[:n], candidates) if n else np.zeros((0, 0))
        if n:
            scores = scores - scores.max(axis=1, keepdims=True)
            loss = float((np.log(np.exp(scores).sum(axis=1)) - scores[np.arange(n), np.arange(n)]).mean())
        else:
            loss = 0.0
        return {**metrics, "loss": loss}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        return [{"text": text, "embedding": [float(v) for v in x]} for text, x in zip(table.texts, outputs)]

    def combine(self, outputs, windows, how="mean"):
        """A long text's vector: the mean (or max) of its windows' vectors, scaled back to length 1 when
        the model's vectors have length 1 (a head that normalises)."""
        vectors = np.stack([np.asarray(o, dtype=np.float64) for o in outputs])
        combined = vectors.max(axis=0) if how == "max" else vectors.mean(axis=0)
        if np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3):
            combined = R.unit(combined[None])[0]
        return combined.astype(np.asarray(outputs[0]).dtype)

    def format_prediction(self, result: dict[str, Any]) -> str:
        vector = result["embedding"]
        shown = " ".join(f"{v:.4f}" for v in vector[:4]) + (" ..." if len(vector) > 4 else "")
        return f"[{shown}] ({len(vector)} dims)\t{one_line(result['text'])}"

    def format_report(self, metrics):
        shown = [k for k in (*R.METRICS, "spearman_cosine", "pearson_cosine", "loss") if k in metrics]
        return "\n".join(f"{k:<16} {metrics[k]:.4f}" for k in shown)

    def agreement(self, pairs) -> dict[str, Any]:
        return self.labelled_agreement(pairs, None)

    def labelled_agreement(self, pairs, targets) -> dict[str, Any]:
        """int8 against fp32, as retrieval sees it. With labelled pairs (``targets``: the check rows' anchors
        and positives), both rank every anchor against every positive, and the agreement is 1 - the drop in
        ndcg@10 from fp32 to int8 (so --min-agreement 0.99 allows a drop of 0.01). Without: every compared
        text is a query against all the others, each text's relevance its fp32 cosine with the query, and
        int8's ranking is scored by ndcg@10 (1 when its top 10 are fp32's). Either way the agreement is 0 when
        the mean cosine of int8's vectors with fp32's is below MIN_MEAN_COSINE."""
        pairs = list(pairs)
        a = [x.reshape(len(x), -1) for x, _, _ in pairs]
        b = [y.reshape(len(y), -1) for _, y, _ in pairs]
        fa, fb = (R.unit(np.concatenate(v)) if v else np.zeros((0, 1)) for v in (a, b))
        cosine = np.sum(fa * fb, axis=1)
        mean_cosine = float(cosine.mean()) if cosine.size else 1.0
        worst = float(cosine.min()) if cosine.size else 1.0
        if targets is not None:
            fp32 = self.evaluate(list(fa), targets, None)["ndcg@10"]
            int8 = self.evaluate(list(fb), targets, None)["ndcg@10"]
            drop = fp32 - int8
            score, extra = 1.0 - max(drop, 0.0), {"ndcg@10_fp32": fp32, "ndcg@10_int8": int8}
            queries = sum(1 for t in targets if t[0] == 0)
            rule = f"1 - ndcg@10 drop on {queries} labelled queries; mean cosine >= {MIN_MEAN_COSINE}"
            shown = f"ndcg@10 fp32 {fp32:.4f}, int8 {int8:.4f} (drop {drop:.4f})"
        else:
            score, extra = neighbour_ndcg(fa, fb), {}
            drop = 1.0 - score
            rule = f"ndcg@10 of int8's neighbours, fp32 cosine as relevance; mean cosine >= {MIN_MEAN_COSINE}"
            shown = f"ndcg@10 drop {drop:.4f} (neighbours, no labelled pairs)"
        return {
            "agreement": score if mean_cosine >= MIN_MEAN_COSINE else 0.0,
            "compared": int(cosine.size),
            "rule": rule,
            **extra,
            "ndcg@10_drop": drop,
            "labelled": targets is not None,
            "mean_cosine": mean_cosine,
            "worst_cosine": worst,
            "min_mean_cosine": MIN_MEAN_COSINE,
            "detail": f"mean cosine with fp32 {mean_cosine:.4f} (worst {worst:.4f}, bound {MIN_MEAN_COSINE}), "
            + shown,
        }

    # ---- batches and the conformance kit ----------------------------------------------------------
    def collate(self, targets):
        import torch

        if targets and isinstance(targets[0], tuple):
            if targets[0][2] is not None:
                raise ZooError(
                    "scored pairs (sentence1, sentence2, score) are for `zoo evaluate`; train an "
                    "embedding model on anchor,positive[,negative] rows"
                )
            targets = [t[0] for t in targets]
        return torch.tensor(np.asarray(targets, dtype=np.int64).reshape(-1))

    def row_groups(self, labels):
        """One group per column: the anchors, often short, are not padded to the documents' length (a
        contrastive batch then computes as many positions as sentence-transformers' per-column forward)."""
        if labels is None or labels.ndim != 1 or len(labels) < 2:
            return None
        _, counts = labels.unique_consecutive(return_counts=True)
        return counts.tolist() if len(counts) > 1 else None

    def output_shape(self, batch, seq, num_labels):
        return (batch, None)  # the width is the head's (d_model, or its dense projection)

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        if batch % 2 == 0:  # batch/2 (anchor, positive) pairs
            return torch.arange(batch) // (batch // 2)
        return torch.arange(batch)  # one anchor, one positive and batch-2 hard negatives


def neighbour_ndcg(reference: np.ndarray, candidate: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean ndcg@k over texts of ``candidate``'s ranking of the other texts, the gain of a text being its
    cosine with the query under ``reference`` (floored at 0): 1.0 when the candidate puts the same texts
    on top; swapping two near-equal neighbours costs next to nothing, missing a close one costs its share.
    Unit rows; 1.0 under two texts."""
    n = len(reference)
    if n < 2:
        return 1.0
    k = min(k, n - 1)
    self_match = np.eye(n, dtype=bool)
    gains = np.where(self_match, 0.0, np.maximum(reference @ reference.T, 0.0))
    scores = np.where(self_match, -np.inf, candidate @ candidate.T)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    found = np.take_along_axis(gains, R.top_k(scores, k), 1) @ discounts
    ideal = np.take_along_axis(gains, R.top_k(np.where(self_match, -np.inf, gains), k), 1) @ discounts
    return float(np.mean(np.where(ideal > 0, found / np.maximum(ideal, 1e-12), 1.0)))
