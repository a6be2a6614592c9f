"""Helpers for the export tests (no tests here): a word-level tokenizer and a tiny model trained in
seconds on separable synthetic text, so int8 and serving are checked on a model that has learnt
something rather than on random weights."""

from __future__ import annotations

import numpy as np
import torch

from zoo.model import build_model

CLASSES = ("neg", "pos", "neu")
CUES = {c: [f"{c}{i}" for i in range(12)] for c in CLASSES}  # words that decide the class
FILLER = [f"w{i}" for i in range(40)]  # words that say nothing


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [w for c in CLASSES for w in CUES[c]] + FILLER
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Texts of 3..20 words: filler plus 1..3 cue words of one class; the label is that class."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(len(CLASSES)))
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 18))))
        for cue in rng.choice(CUES[CLASSES[label]], size=int(rng.integers(1, 4))):
            words.insert(int(rng.integers(len(words) + 1)), cue)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def trained_model(
    arch: str = "transformer", attention: str = "sdpa", steps: int = 150, seed: int = 0, lr: float = 2e-2
):
    """A 1-layer model fine-tuned to ~100% accuracy on ``sentences``; returns (model, accuracy)."""
    from zoo.tokenizer import encode

    tokenizer = word_tokenizer()
    model = build_model(
        arch,
        "cls",
        attention,
        labels=list(CLASSES),
        d_model=32,
        num_layers=1,
        num_heads=2,
        vocab_size=tokenizer.get_vocab_size(),
        max_length=32,
        dropout=0.0,
        seed=seed,
        head_options={"pooling": "mean"},
    )
    model.tokenizer = tokenizer
    texts, labels = sentences(512, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        batch = generator.choice(len(texts), 32, replace=False)
        ids, mask = encode(tokenizer, [texts[i] for i in batch], max_length=32)
        logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
        loss = model.loss(logits, torch.tensor([labels[i] for i in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_texts, test_labels = sentences(200, seed=2)
    ids, mask = encode(tokenizer, test_texts, max_length=32)
    with torch.no_grad():
        predicted = model(torch.from_numpy(ids), torch.from_numpy(mask)).argmax(-1).numpy()
    return model, float((predicted == np.array(test_labels)).mean())


def matmul_graph(path, weight) -> None:
    """x (rows × K) · weight, as an ONNX file with the model's input names beside it (unused)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
