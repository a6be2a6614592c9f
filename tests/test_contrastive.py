"""Contrastive fine-tuning of the embedding task: pairs files, several sequences per row, the batch sampler
that keeps duplicate texts apart, --grad-accum refused, and negatives gathered from every process."""

from __future__ import annotations

import csv
import json
import os
import random

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner

from zoo.cli import cli
from zoo.errors import ZooError
from zoo.tasks import load_task
from zoo.training.batching import Collate, without_duplicates

TOPICS = ["cat", "dog", "car", "tree", "river", "music", "bread", "train", "phone", "snow", "sun", "book"]
WORDS = ["red", "blue", "small", "big", "old", "new", "fast", "slow", "happy", "quiet", "loud", "bright"]


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def triples(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.choice(TOPICS)
        other = rng.choice([x for x in TOPICS if x != t])
        out.append(
            (
                f"what about the {t} {rng.choice(WORDS)}",
                f"a {rng.choice(WORDS)} {t} is here",
                f"a {rng.choice(WORDS)} {other} is there",
            )
        )
    return out


def zoo(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("contrastive")
    out = zoo(
        "build",
        "--arch",
        "transformer",
        "--head",
        "embedding",
        "--set",
        "d_model=32",
        "--set",
        "num_layers=1",
        "--set",
        "num_heads=2",
        "-o",
        root / "tiny",
    )
    assert out.exit_code == 0, out.output
    return root


def test_a_pairs_file_becomes_sequences_column_by_column(tmp_path):
    task = load_task("embedding")
    table = task.read(write(tmp_path / "p.csv", ["query", "positive", "negative"], triples(3, 0)))
    assert table.columns["negative"] and len(table) == 3
    targets = task.targets(table, None, None, [None] * 3)
    seq = task.sequences(targets)
    assert [t[0] for t in seq] == [0, 0, 0, 1, 1, 1, 2, 2, 2] and seq[3][1] == table.pairs[0]
    collate = Collate([[np.array([5, 6]), np.array([7]), np.array([8, 9, 9])]] * 3, targets, 0, task)
    batch = collate(np.array([0, 1]))
    assert batch["input_ids"].shape == (6, 3) and batch["labels"].tolist() == [0, 0, 1, 1, 2, 2]
    assert task.batch_keys(table)[0] == (table.texts[0], table.pairs[0], table.columns["negative"][0])


def test_bad_pairs_files_are_one_line_errors(tmp_path):
    task = load_task("embedding")
    with pytest.raises(ZooError, match=r"no positive column \(name it positive or"):
        task.read(write(tmp_path / "a.csv", ["anchor", "other"], [("a", "b")]))
    with pytest.raises(ZooError, match="line 3: the anchor in column 'query' is empty"):
        task.read(write(tmp_path / "b.csv", ["query", "positive"], [("q", "p"), ("  ", "p")]))
    with pytest.raises(ZooError, match="score in column 'score' must be a number"):
        task.read(write(tmp_path / "c.csv", ["sentence1", "sentence2", "score"], [("a", "b", "high")]))


def test_the_sampler_keeps_duplicate_texts_out_of_a_batch():
    rng = np.random.default_rng(0)
    keys = [(f"q{i}", f"p{rng.integers(0, 6)}") for i in range(40)]  # positives shared by many rows
    batches = [np.arange(i, min(i + 4, 40)) for i in range(0, 40, 4)]
    out = without_duplicates(batches, keys, 4)
    assert sorted(np.concatenate(out).tolist()) == list(range(40)) and len(out) <= len(batches)
    assert all(len(b) <= 4 for b in out)
    assert all(len({keys[r][1] for r in b}) == len(b) for b in out)  # 6 distinct positives, batches of 4


def test_contrastive_finetuning_learns_and_refuses_grad_accum(tiny, tmp_path):
    train = write(tmp_path / "train.csv", ["anchor", "positive", "negative"], triples(160, 1))
    dev = write(tmp_path / "dev.csv", ["query", "positive"], [r[:2] for r in triples(40, 2)])
    out = zoo(
        "finetune",
        tiny / "tiny",
        "--train",
        train,
        "--eval",
        dev,
        "-o",
        tmp_path / "ft",
        "--epochs",
        3,
        "--batch-size",
        16,
        "-q",
        "--no-curves",
    )
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert {"ndcg@10", "mrr@10", "recall@1", "recall@10", "map@100"} <= set(records[-1]["eval"])
    refused = zoo("finetune", tiny / "tiny", "--train", train, "-o", tmp_path / "x", "--grad-accum", 2, "-q")
    assert refused.exit_code != 0 and "--grad-accum 2: the embedding task" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def _gathered(rank, world, port, queue):
    import torch.distributed as dist

    from zoo.plugins.heads.embedding import ranking_loss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        full = torch.randn(5, 3, 4)  # 5 rows of (anchor, positive, negative); 3 rows here, 2 there
        rows = torch.tensor_split(torch.arange(5), world)[rank]
        local = full[rows].clone().requires_grad_(True)
        out, labels, _ = load_task("embedding").gather(
            local.transpose(0, 1).reshape(-1, 4), torch.arange(3).repeat_interleave(len(rows)), None
        )
        loss = ranking_loss(out, labels)
        loss.backward()
        queue.put((loss.item(), rows.tolist(), local.grad.tolist()))
    finally:
        dist.destroy_process_group()


def test_negatives_are_gathered_from_every_process():
    from zoo.plugins.heads.embedding import ranking_loss

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + random.Random(os.getpid()).randrange(400)
    procs = [ctx.Process(target=_gathered, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    torch.manual_seed(0)
    full = torch.randn(5, 3, 4).requires_grad_(True)
    ref = ranking_loss(full.transpose(0, 1).reshape(-1, 4), torch.arange(3).repeat_interleave(5))
    ref.backward()
    for (
        loss,
        rows,
        grad,
    ) in results:  # the global batch's loss; DDP's mean over 2 processes gives the gradient
        assert abs(loss - ref.item()) < 1e-5
        assert torch.allclose(torch.tensor(grad), 2 * full.grad[rows], atol=1e-5)
