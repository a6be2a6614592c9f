"""Contrastive training runs the anchors and the documents through the encoder separately, each padded to
its own longest (ZooModel.forward's ``groups``, the task's ``row_groups``): the same loss and gradients as
sentence-transformers' MultipleNegativesRankingLoss, and no anchor padded to a document's length."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from test_embedding import TINY_TEXTS, save_sentence_dir, tiny_embedding_model

from zoo.data import pad
from zoo.hf import import_pretrained
from zoo.tasks import load_task


def batch(model, anchors, positives):
    rows = [np.asarray(e.ids) for e in model.tokenizer.encode_batch(list(anchors) + list(positives))]
    ids = torch.from_numpy(pad(rows, 0))
    mask = torch.from_numpy(pad([np.ones(len(r), dtype=np.int64) for r in rows], 0))
    return ids, mask, torch.tensor([0] * len(anchors) + [1] * len(positives))


def test_row_groups_are_the_columns_and_other_tasks_have_none():
    embedding = tiny_embedding_model().task
    assert embedding.row_groups(torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])) == [3, 3, 3]
    assert embedding.row_groups(torch.tensor([0, 0, 0])) is None  # one column: nothing to split
    assert load_task("classification").row_groups(torch.tensor([2, 0, 1])) is None


def test_grouped_forward_gives_the_loss_and_gradients_of_sentence_transformers(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    directory = save_sentence_dir(tmp_path, pooling="mean", dense=False, normalize=True)
    model = import_pretrained(str(directory), head=None).eval()  # eval: no dropout, so both are exact
    anchors, positives = (
        ["sad", "a very good film !", "the cat"],
        ["it was so so so very bad , the movie ? the film !", TINY_TEXTS[0], TINY_TEXTS[1]],
    )  # each shorter than the directory's max_seq_length (24), which zoo's bare tokenizer does not apply
    ids, mask, labels = batch(model, anchors, positives)
    one = model(ids, mask)
    grouped = model(ids, mask, model.task.row_groups(labels))
    assert torch.allclose(one, grouped, atol=1e-6)  # padding does not change a row's vector
    loss = model.loss(grouped, labels)
    loss.backward()

    peer = st.SentenceTransformer(str(directory), device="cpu").eval()
    features = [peer.tokenize(anchors), peer.tokenize(positives)]  # its own per-column batches
    peer_loss = MultipleNegativesRankingLoss(peer)(features, None)
    peer_loss.backward()
    assert abs(loss.item() - peer_loss.item()) < 1e-5
    ours = model.encoder.embeddings.word_embeddings.weight.grad
    theirs = peer[0].auto_model.embeddings.word_embeddings.weight.grad
    assert ours is not None and theirs is not None
    assert (ours - theirs).abs().max().item() < 1e-5


def test_finetune_pads_the_anchors_only_to_their_own_longest(tmp_path):
    from zoo.training import TrainConfig, finetune

    directory = save_sentence_dir(tmp_path, pooling="mean", dense=False, normalize=True)
    model = import_pretrained(str(directory), head=None)
    short, long = "the cat", "it was so so so very bad , the movie ? the film ! the plot . great"
    data = tmp_path / "pairs.csv"
    with open(data, "w", newline="") as handle:
        csv.writer(handle).writerows(
            [("anchor", "positive"), *[(f"{short} {i}", f"{long} {i}") for i in range(6)]]
        )
    widths: list[tuple[int, int]] = []
    encoder_forward = model.encoder.forward

    def spy(input_ids, attention_mask=None, *rest):
        if torch.is_grad_enabled():  # training steps, not evaluation
            widths.append((input_ids.shape[0], input_ids.shape[1]))
        return encoder_forward(input_ids, attention_mask, *rest)

    model.encoder.forward = spy
    config = TrainConfig(epochs=1, batch_size=6, max_length=24, patience=None, curves=False, num_threads=1)
    finetune(model, data, output=tmp_path / "out", config=config, overwrite=True, progress=False)
    anchor_len, doc_len = (len(model.tokenizer.encode(f"{t} 0").ids) for t in (short, long))
    assert widths == [(6, anchor_len), (6, doc_len)] and anchor_len < doc_len
