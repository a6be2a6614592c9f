"""Token classification: one label per word (tagging, NER). A word's label sits on its first piece;
later pieces and padding get IGNORE_INDEX, which the head's loss and the metrics skip."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo import metrics as M
from zoo.constants import IGNORE_INDEX
from zoo.tasks import Task, class_name, log_softmax, lookup

from .classification import name_of


def words(value: Any) -> list[str]:
    return value if isinstance(value, list) else str(value).split()


def first_pieces(encoding) -> dict[int, int]:
    """word index -> the position of its first piece."""
    first: dict[int, int] = {}
    for position, word in enumerate(encoding.word_ids):
        if word is not None and word not in first:
            first[word] = position
    return first


class TokenClassification(Task):
    per_token = True
    main_metric = "macro_f1"
    summary_metrics = ("accuracy", "macro_f1")

    def names_in(self, label):
        return [class_name(t) for t in words(label)]

    def inputs(self, tokenizer, table, max_length):
        from zoo.tokenizer import encode_rows

        return encode_rows(tokenizer, [words(t) for t in table.texts], None, max_length, pretokenized=True)

    def target(self, label, index, num_labels, text, encoding, where) -> np.ndarray:
        tags, ws = words(label), words(text)
        if len(tags) != len(ws):
            raise ValueError(f"{len(ws)} words but {len(tags)} labels")
        ids = [lookup(index, class_name(t)) for t in tags]
        row = np.full(len(encoding.ids), IGNORE_INDEX, dtype=np.int64)
        for word, position in first_pieces(encoding).items():
            row[position] = ids[word]
        return row

    def collate(self, targets):
        import torch

        from zoo.data import pad

        return torch.from_numpy(pad(targets, IGNORE_INDEX))

    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        x = np.concatenate([np.asarray(r, dtype=np.float64) for r in outputs])
        y = np.concatenate([np.asarray(g, dtype=np.int64) for g in targets])
        keep = y != IGNORE_INDEX
        loss = float(-log_softmax(x[keep])[np.arange(int(keep.sum())), y[keep]].mean()) if keep.any() else 0.0
        return {**M.token_metrics(y, x.argmax(-1), names or []), "loss": loss}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        results = []
        for text, encoding, x in zip(table.texts, encodings, outputs):
            ws, first = words(text), first_pieces(encoding)
            tags = [
                name_of(names, x[first[w]].argmax()) if w in first and first[w] < len(x) else None
                for w in range(len(ws))
            ]
            results.append({"text": " ".join(ws), "words": ws, "labels": tags})
        return results

    def format_prediction(self, result):
        return " ".join(f"{w}/{t}" for w, t in zip(result["words"], result["labels"]))

    def format_report(self, metrics):
        return M.format_report(metrics, self.summary_metrics)

    def agreement(self, pairs):
        agree = total = 0
        for a, b, mask in pairs:
            real = mask.astype(bool)
            same = a.argmax(-1)[real] == b.argmax(-1)[real]
            agree, total = agree + int(same.sum()), total + same.size
        return {"agreement": agree / max(total, 1), "compared": total, "rule": "argmax per real token"}

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        return torch.randint(0, num_labels, (batch, seq), generator=generator)
