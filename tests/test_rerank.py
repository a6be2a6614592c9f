"""Reranking (cross-encoder): the rerank head and task, importing a sentence-transformers CrossEncoder and a
transformers BertForSequenceClassification (num_labels=1) with parity, ranking metrics against
sentence-transformers' CrossEncoderRerankingEvaluator and sklearn, `zoo rerank` on a model directory and
an export, fine-tuning from labelled pairs and from triples, `POST /rerank`, and bad input (one line each)."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from zoo.cli import cli
from zoo.model import load_model
from zoo.retrieval import rerank_metrics

QUERY = "the cat sat on the mat"
TEXTS = [
    "a very good film !",
    "the cat sat on the mat",
    "it was so so so very bad , the movie ? the film ! the plot . great the cat sat on the mat it was so good",
    "sad",
    "the cat",
]
from test_hf import WORDS  # noqa: E402  (the tiny vocabulary)


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, text):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.output


def save_cross_encoder(path):
    """A tiny random BertForSequenceClassification (num_labels=1), saved by transformers, and the same model
    saved by sentence-transformers as a CrossEncoder; the classifier is scaled so scores spread out."""
    st = pytest.importorskip("sentence_transformers")
    from test_hf import save_checkpoint
    from tokenizers.implementations import BertWordPieceTokenizer

    model = save_checkpoint(path / "hf", classifier=True, num_labels=1, seed=5)
    torch.manual_seed(5)
    with torch.no_grad():  # weights large enough that every pair gets its own score
        for weight in (w for w in model.parameters() if w.dim() == 2):
            weight.normal_(0, 0.1)
        model.classifier.weight.mul_(10.0)
    model.save_pretrained(path / "hf", safe_serialization=True)
    # the tokenizer.json transformers 5 writes for BertTokenizerFast(vocab_file=...) holds only the special
    # tokens; one built from vocab.txt knows every word
    vocab = str(path / "hf" / "vocab.txt")
    BertWordPieceTokenizer(vocab, lowercase=True)._tokenizer.save(str(path / "hf" / "tokenizer.json"))
    ce = st.CrossEncoder(str(path / "hf"), device="cpu")
    ce.save(str(path / "ce"))
    return path / "hf", path / "ce"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    hf, ce = save_cross_encoder(root)
    out = zoo("build", "--from-pretrained", ce, "-o", root / "zce")
    assert out.exit_code == 0, out.output
    out = zoo("export", root / "zce", "--onnx", "-o", root / "x")
    assert out.exit_code == 0, out.output
    return {"root": root, "hf": hf, "ce": ce, "zce": root / "zce", "x": root / "x"}


# ---- the metrics ------------------------------------------------------------------------------------


def test_rerank_metrics_match_sklearn_per_query():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    groups, scores, labels = [], [], []
    for q in range(12):
        n = int(rng.integers(3, 25))
        groups += [q] * n
        scores += rng.normal(size=n).round(1).tolist()  # rounded: ties, which average precision groups
        labels += (rng.random(n) < 0.3).astype(float).tolist()
    scores, labels, groups = np.asarray(scores), np.asarray(labels), np.asarray(groups)
    labels[groups == 3] = 0  # a query without a relevant candidate counts 0
    want = {"map": [], "mrr@10": [], "ndcg@10": []}
    for q in range(12):
        y, s = labels[groups == q], scores[groups == q]
        if not y.any():
            for k in want:
                want[k].append(0.0)
            continue
        want["map"].append(sklearn.average_precision_score(y, s))
        order = np.argsort(-s, kind="stable")[:10]
        want["mrr@10"].append(next((1 / (i + 1) for i, j in enumerate(order) if y[j]), 0.0))
        s_unique = s + np.arange(len(s)) * -1e-9  # sklearn's ndcg averages ties; break them as we do
        want["ndcg@10"].append(sklearn.ndcg_score([y], [s_unique], k=10))
    got = rerank_metrics(scores, labels, groups.tolist())
    assert got["queries"] == 12
    for k, values in want.items():
        assert abs(got[k] - np.mean(values)) < 1e-12, k


def rows_for(rng, queries=6, per_query=6):
    """query,text,label rows: a relevant text shares the query's words, the others are random words."""
    rows = []
    for _ in range(queries):
        query = " ".join(rng.choice(WORDS) for _ in range(3))
        for j in range(per_query):
            relevant = j < 2
            text = (query + " " if relevant else "") + " ".join(
                rng.choice(WORDS) for _ in range(rng.randint(2, 9))
            )
            rows.append((query, text, int(relevant)))
    return rows


def write(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_evaluate_matches_the_cross_encoder_reranking_evaluator(models, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    rows = rows_for(random.Random(1))
    data = write(tmp_path / "dev.csv", ["query", "text", "label"], rows)
    samples = {}
    for q, t, label in rows:
        sample = samples.setdefault(q, {"query": q, "positive": [], "negative": []})
        sample["positive" if label else "negative"].append(t)
    reference = CrossEncoderRerankingEvaluator(list(samples.values()), write_csv=False)(
        st.CrossEncoder(str(models["ce"]), device="cpu")
    )
    for source in ("zce", "x"):
        result = zoo("evaluate", models[source], "--data", data, "--json")
        assert result.exit_code == 0, result.output
        ours = json.loads(result.output)
        assert ours["task"] == "rerank" and ours["queries"] == len(samples)
        for key in ("map", "mrr@10", "ndcg@10"):
            assert abs(ours[key] - reference[key]) < 1e-6, (source, key)
        assert 0 <= ours["accuracy"] <= 1 and ours["loss"] > 0


# ---- importing ---------------------------------------------------------------------------------------


def test_a_cross_encoder_imports_as_rerank_with_parity(models):
    st = pytest.importorskip("sentence_transformers")
    model = load_model(models["zce"])
    assert model.spec.head.name == "rerank" and model.task.name == "rerank"
    assert model.spec.head.options == {
        "pooling": "cls",
        "pooler": True,
        "pooler_activation": "tanh",
        "pooler_norm": False,
    }
    reference = st.CrossEncoder(str(models["ce"]), device="cpu").predict(
        [[QUERY, t] for t in TEXTS], batch_size=3
    )
    assert np.diff(np.sort(reference)).min() > 1e-4  # scores apart, so the ranks say something
    for source in ("zce", "x"):  # the model directory (torch) and its export (onnxruntime)
        result = zoo("rerank", models[source], "--query", QUERY, *TEXTS, "--json", "--batch-size", 3)
        assert result.exit_code == 0, result.output
        ranked = json.loads(result.output)
        assert [r["index"] for r in ranked] == np.argsort(-reference, kind="stable").tolist()
        scores = np.asarray([r["score"] for r in sorted(ranked, key=lambda r: r["index"])])
        assert np.abs(scores - reference).max() < 1e-5, source


def test_a_bert_for_sequence_classification_imports_with_head_rerank(models, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = zoo("build", "--from-pretrained", models["hf"], "--head", "rerank", "-o", tmp_path / "m")
    assert out.exit_code == 0, out.output
    reference_model = transformers.BertForSequenceClassification.from_pretrained(models["hf"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(models["hf"])
    batch = tokenizer([QUERY] * len(TEXTS), TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = reference_model(**batch).logits[:, 0].numpy()
    result = zoo("rerank", tmp_path / "m", "-q", QUERY, *TEXTS, "--json", "--raw-scores")
    assert result.exit_code == 0, result.output
    ours = {r["index"]: r["score"] for r in json.loads(result.output)}
    assert np.abs(np.asarray([ours[i] for i in range(len(TEXTS))]) - logits).max() < 1e-5


def test_rerank_text_output_top_k_return_text_and_file(models, tmp_path):
    data = write(tmp_path / "texts.csv", ["text"], [[t] for t in TEXTS])
    from_file = zoo(
        "rerank", models["x"], "-q", QUERY, "--file", data, "--json", "--return-text", "--top-k", 2
    )
    assert from_file.exit_code == 0, from_file.output
    best = json.loads(from_file.output)
    assert len(best) == 2 and all(TEXTS[r["index"]] == r["text"] for r in best)
    plain = zoo("rerank", models["x"], "-q", QUERY, *TEXTS)
    assert plain.exit_code == 0, plain.output
    lines = plain.output.strip().splitlines()
    assert len(lines) == len(TEXTS) and lines[0].split("\t")[1] == str(best[0]["index"])


# ---- fine-tuning --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetuning_from_labelled_pairs_and_from_triples(models, tmp_path):
    rng = random.Random(2)
    train = write(tmp_path / "train.csv", ["query", "text", "label"], rows_for(rng, 30, 4))
    dev = write(tmp_path / "dev.csv", ["query", "text", "label"], rows_for(rng, 8, 4))
    common = ("--eval", dev, "--epochs", 4, "--batch-size", 16, "--lr", "3e-4", "-q", "--no-curves")
    out = zoo("finetune", models["zce"], "--train", train, "-o", tmp_path / "ft", *common)
    assert out.exit_code == 0, out.output
    records = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert {"map", "mrr@10", "ndcg@10", "accuracy", "loss"} <= set(records[-1]["eval"])
    triples = [
        (q, t, n)
        for (q, t, label), (_, n, _) in zip(rows_for(rng, 20, 2)[::2], rows_for(rng, 20, 2)[1::2])
        if label
    ]
    tfile = write(tmp_path / "triples.csv", ["query", "positive", "negative"], triples)
    out = zoo("finetune", models["zce"], "--train", tfile, "-o", tmp_path / "ft2", *common)
    assert out.exit_code == 0, out.output


def test_triples_read_as_a_positive_and_a_negative_pair(tmp_path):
    from zoo.tasks import load_task

    task = load_task("rerank")
    data = write(
        tmp_path / "t.csv",
        ["query", "positive", "negative"],
        [["q1", "p1", "n1"], ["q1", "p1", "n2"], ["q2", "p2", "n1"]],
    )
    table = task.read(data)
    assert list(zip(table.texts, table.pairs, table.labels)) == [
        ("q1", "p1", 1.0),
        ("q1", "n1", 0.0),
        ("q1", "n2", 0.0),
        ("q2", "p2", 1.0),
        ("q2", "n1", 0.0),
    ]


# ---- bad input ----------------------------------------------------------------------------------------


def test_bad_input_is_one_line(models, tmp_path):
    one_line_error(zoo("rerank", models["zce"], "a", "b"), "--query")
    one_line_error(zoo("rerank", models["zce"], "-q", "  ", "a"), "the query is empty")
    one_line_error(zoo("rerank", models["zce"], "-q", "x"), "give some texts")
    missing = write(tmp_path / "m.csv", ["query", "text"], [["a", "b"]])
    one_line_error(zoo("evaluate", models["zce"], "--data", missing), "query,text,label")
    label = write(tmp_path / "l.csv", ["query", "text", "label"], [["a", "b", 3]])
    one_line_error(
        zoo("evaluate", models["zce"], "--data", label), "line 2: a rerank label must be in [0, 1]"
    )
    emb = tmp_path / "emb"
    assert zoo("build", "--arch", "transformer", "--head", "embedding", "-o", emb).exit_code == 0
    one_line_error(zoo("rerank", emb, "-q", "x", "a"), "needs a rerank model")
    one_line_error(zoo("embed", models["zce"], "a"), "needs an embedding model")


# ---- serving ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_post_rerank_answers_as_zoo_rerank_and_tei(models):
    pytest.importorskip("uvicorn")
    from test_serve import server

    expected = json.loads(zoo("rerank", models["x"], "-q", QUERY, *TEXTS, "--json").output)
    raw = json.loads(zoo("rerank", models["x"], "-q", QUERY, *TEXTS, "--json", "--raw-scores").output)
    with server(models["x"], "--max-client-batch-size", "8") as client:
        status, answer = client.call("/rerank", {"query": QUERY, "texts": TEXTS})
        assert status == 200 and [r["index"] for r in answer] == [r["index"] for r in expected]
        assert max(abs(a["score"] - e["score"]) for a, e in zip(answer, expected)) < 1e-6
        status, answer = client.call(
            "/rerank", {"query": QUERY, "texts": TEXTS, "raw_scores": True, "return_text": True}
        )
        assert status == 200 and max(abs(a["score"] - e["score"]) for a, e in zip(answer, raw)) < 1e-6
        assert all(TEXTS[r["index"]] == r["text"] for r in answer)
        for body, code in [
            ({"texts": TEXTS}, 422),
            ({"query": QUERY, "texts": "a"}, 422),
            ({"query": QUERY, "texts": []}, 400),
            ({"query": "", "texts": ["a"]}, 400),
            ({"query": QUERY, "texts": ["a"] * 9}, 422),
            ({"query": QUERY, "texts": ["a"], "raw_scores": "yes"}, 422),
        ]:
            status, answer = client.call("/rerank", body)
            assert status == code and "error" in answer, (body, answer)


@pytest.mark.slow
def test_post_rerank_on_another_task_is_422(tmp_path):
    pytest.importorskip("uvicorn")
    from export_fixtures import trained_model
    from test_serve import server

    from zoo.export.pipeline import export_model

    model, _ = trained_model(seed=1)
    export_model(model, tmp_path / "x")
    with server(tmp_path / "x") as client:
        status, answer = client.call("/rerank", {"query": "a", "texts": ["b"]})
        assert status == 422 and "does not score (query, text) pairs" in answer["error"]
