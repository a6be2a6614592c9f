"""Masked language modelling: the pre-training task. A target is a token id at each masked position and
IGNORE_INDEX elsewhere (sparse prediction: the loss sees only masked tokens). `zoo pretrain` makes the
masks (zoo/training/masking.py); `zoo predict` fills each [MASK] in a text with the model's top tokens."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.constants import IGNORE_INDEX
from zoo.errors import ZooError
from zoo.tasks import Task, log_softmax, one_line, softmax

MASK_TOKEN = "[MASK]"


class MaskedLM(Task):
    per_token = True
    named_labels = False
    main_metric = "loss"
    lower_is_better = True
    summary_metrics = ("loss", "accuracy")
    uses_top_k = True
    pretraining = True  # `zoo finetune` replaces the head with the fine-tuning task's head

    def __init__(self) -> None:
        self.tokenizer: Any = None  # the last tokenizer ``inputs`` used: tokens for ``predict``

    def label_names(self, table, known):
        return None

    def num_labels(self, table, names):
        return None  # the vocabulary (the tied embedding) sets the head's width

    def check_training(self, config):
        raise ZooError("an mlm model trains with `zoo pretrain`; `zoo finetune` gives it a task head")

    def inputs(self, tokenizer, table, max_length):
        self.tokenizer = tokenizer
        return super().inputs(tokenizer, table, max_length)

    def collate(self, targets):
        import torch

        from zoo.data import pad

        return torch.from_numpy(pad(targets, IGNORE_INDEX))

    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        x = np.concatenate([np.asarray(r, dtype=np.float64) for r in outputs])
        y = np.concatenate([np.asarray(g, dtype=np.int64) for g in targets])
        keep = y != IGNORE_INDEX
        if not keep.any():
            return {"loss": 0.0, "accuracy": 0.0, "masked": 0}
        x, y = x[keep], y[keep]
        loss = float(-log_softmax(x)[np.arange(len(y)), y].mean())
        return {"loss": loss, "accuracy": float((x.argmax(-1) == y).mean()), "masked": len(y)}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        top_k = max(1, top_k)
        results = []
        for text, encoding, x in zip(table.texts, encodings, outputs):
            tokens = list(encoding.tokens)
            masks: list[dict[str, Any]] = []
            for position, token in enumerate(tokens[: len(x)]):
                if token != MASK_TOKEN:
                    continue
                p = softmax(np.asarray(x[position], dtype=np.float64))
                best = np.argsort(-p, kind="stable")[:top_k]
                masks.append(
                    {
                        "position": position,
                        "tokens": [{"token": self._token(int(i)), "score": float(p[i])} for i in best],
                    }
                )
            filled = [m["tokens"][0]["token"] for m in masks]
            results.append({"text": text, "masks": masks, "filled": self._fill(text, filled)})
        return results

    def _token(self, token_id: int) -> str:
        token = self.tokenizer.id_to_token(token_id) if self.tokenizer is not None else None
        return token if token is not None else str(token_id)

    @staticmethod
    def _fill(text: Any, tokens: list[str]) -> str:
        out = str(text)
        for token in tokens:
            out = out.replace(MASK_TOKEN, token.removeprefix("##"), 1)
        return out

    def format_prediction(self, result):
        if not result["masks"]:
            return f"{one_line(result['text'])}\t(no {MASK_TOKEN} in the text)"
        choices = "; ".join(
            ", ".join(f"{t['token']} {t['score']:.2f}" for t in m["tokens"]) for m in result["masks"]
        )
        return f"{one_line(result['filled'])}\t{choices}"

    def format_report(self, metrics):
        return "\n".join(f"{k:<12} {metrics[k]:.4f}" for k in ("loss", "accuracy") if k in metrics)

    def agreement(self, pairs):
        agree = total = 0
        for a, b, mask in pairs:
            real = mask.astype(bool)
            same = a.argmax(-1)[real] == b.argmax(-1)[real]
            agree, total = agree + int(same.sum()), total + same.size
        return {"agreement": agree / max(total, 1), "compared": total, "rule": "argmax per real token"}

    def output_shape(self, batch, seq, num_labels):
        return (batch, seq, None)  # one logit per vocabulary entry

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        labels = torch.randint(0, num_labels, (batch, seq), generator=generator)
        masked = torch.rand(batch, seq, generator=generator) < 0.3
        masked[:, 0] = True  # at least one masked token per row
        return labels.masked_fill(~masked, IGNORE_INDEX)
