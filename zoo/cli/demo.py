"""``zoo demo``: the main job end to end on a real pretrained checkpoint and real tweets."""

from __future__ import annotations

import json

import click

from .options import threads_option


@click.command()
@click.option(
    "--output",
    "-o",
    default="zoo-demo",
    show_default=True,
    type=click.Path(),
    help="Directory for the data splits, the model, the exports and the report.",
)
@click.option(
    "--task",
    type=click.Choice(["classification", "retrieval"]),
    default="classification",
    show_default=True,
    help="classification: sentiment of real tweets; retrieval: search and rerank numpy's documentation.",
)
@click.option(
    "--samples",
    default=None,
    type=click.IntRange(min=30),
    help="Training tweets [default: 2400]; for --task retrieval, numpy functions (60% train, 10% eval, 30% "
    "test) [default: all].",
)
@click.option(
    "--held-out",
    default=None,
    type=click.IntRange(min=10),
    help="Tweets in each of the eval and test splits [default: 1000] (not for --task retrieval).",
)
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="[default: 2; retrieval: 1]")
@click.option(
    "--candidates",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="--task retrieval: the embedding search's best documents the reranker reorders per query.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@threads_option
def demo(output, task, samples, held_out, epochs, candidates, seed, overwrite, as_json, threads):
    """Import MiniLM, fine-tune on real tweets, evaluate, export ONNX fp32 + int8, serve, summarise
    (--task retrieval: embed, fine-tune, export, rerank and search numpy's documentation)."""
    from zoo.threads import use

    use(threads)
    log = (lambda message: click.echo(message, err=True)) if as_json else click.echo
    if task == "retrieval":
        from zoo.retrieval_demo import run_retrieval_demo

        if held_out is not None:
            raise click.UsageError(
                "--held-out is for the tweets; --task retrieval splits numpy's functions 60/10/30 (--samples)"
            )

        summary = run_retrieval_demo(
            output,
            samples=samples,
            epochs=epochs or 1,
            candidates=candidates,
            seed=seed,
            overwrite=overwrite,
            log=log,
            threads=threads,
        )
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        else:
            print_retrieval(summary)
        return
    from zoo.demo import run_demo

    summary = run_demo(
        output,
        samples=samples or 2400,
        held_out=held_out or 1000,
        epochs=epochs or 2,
        seed=seed,
        overwrite=overwrite,
        log=log,
        threads=threads,
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    t, q, lat, size = summary["test"], summary["test_int8"], summary["latency_ms"], summary["sizes_mb"]
    parity, int8 = summary["parity_fp32"], summary["int8"]
    verdict = (
        f"{int8['method']}: int8 is served"
        if int8["passed"]
        else f"below the {int8['min_agreement']:.0%} bar: fp32 is served"
    )
    click.echo("")
    click.echo(
        f"zoo demo: all-MiniLM-L6-v2 fine-tuned on {summary['train_rows']} real tweets "
        f"in {summary['train_seconds']:.0f} s"
    )
    click.echo(
        f"  {'test (n=' + str(t['n']) + ')':<20}accuracy {t['accuracy']:.3f}   macro-F1 {t['macro_f1']:.3f}   (torch)"
    )
    click.echo(
        f"  test, ONNX int8     accuracy {q['accuracy']:.3f}   macro-F1 {q['macro_f1']:.3f}   "
        f"({q['agreement']:.1%} of the answers as fp32's)"
    )
    click.echo(
        f"  ONNX fp32 parity    max abs diff {parity['max_abs']:.1e}, max rel {parity['max_rel']:.1e} "
        f"on {len(parity['shapes'])} unseen shapes {parity['shapes']}"
    )
    click.echo(
        f"  int8 agreement      {int8['agreement']:.1%} of {int8['compared']} predictions match fp32 ({verdict})"
    )
    click.echo(
        f"  latency, one text   torch {lat['torch']:.1f} ms   ONNX fp32 {lat['onnx_fp32']:.1f} ms   "
        f"ONNX int8 {lat['onnx_int8']:.1f} ms   (median, tokenising included)"
    )
    click.echo(
        f"  file size           ONNX fp32 {size['onnx_fp32']:.1f} MB   ONNX int8 {size['onnx_int8']:.1f} MB "
        f"({int8['size_ratio']:.0%})"
    )
    click.echo(f"  predictions (onnxruntime, {summary['served']}, the file zoo predict serves):")
    for row in summary["predictions"]:
        click.echo(f"    {row['label']:<9} {row['probability']:.2f}  {row['text']}")
    if summary["report"]:
        click.echo(f"  report              {summary['report']} (+ confusion.png, curves.png)")
    click.echo(f'  next                zoo predict {summary["output"]}/export "your text here"')


def print_retrieval(summary) -> None:
    data, before, after = summary["data"], summary["pretrained"], summary["finetuned"]
    search, reranked, int8 = summary["search"], summary["reranked"], summary["int8"]

    def row(name, m):
        return (
            f"  {name:<30}ndcg@10 {m['ndcg@10']:.3f}   mrr@10 {m['mrr@10']:.3f}   "
            f"recall@1 {m['recall@1']:.3f}   recall@10 {m['recall@10']:.3f}"
        )

    click.echo("")
    click.echo(
        f"zoo demo --task retrieval: numpy's docstrings, {data['train']} train / {data['eval']} eval / "
        f"{data['test']} test functions (query: the summary; document: the rest)"
    )
    click.echo(f"  test: each of {data['test']} queries ranked against every test document")
    click.echo(row("pretrained all-MiniLM-L6-v2", before))
    click.echo(row(f"fine-tuned ({summary['embed_seconds']:.0f} s)", after))
    click.echo(f"  {'':<30}ndcg@10 {after['ndcg@10'] - before['ndcg@10']:+.3f} from contrastive fine-tuning")
    if "ndcg@10_drop" in int8:
        gate = (
            f"ndcg@10 fp32 {int8['ndcg@10_fp32']:.3f} -> int8 {int8['ndcg@10_int8']:.3f} on the "
            f"{'evaluation pairs' if int8.get('labelled') else 'neighbours'} (drop {int8['ndcg@10_drop']:+.4f}, "
            f"bound {int8['max_ndcg_drop']:g}), mean cosine {int8['mean_cosine']:.4f}"
        )
    else:
        gate = "untrained head: not gated"
    verdict = "int8 passes: it is served" if int8["passed"] else "int8 fails its gate: fp32 is served"
    click.echo(f"  ONNX export         parity max abs diff {summary['parity_max_abs']:.1e}; {gate}")
    click.echo(
        f"  {'':<20}{verdict} ({summary['served']}, {int8['method']}, {int8['size_ratio']:.0%} of the fp32 size)"
    )
    click.echo(
        f"  search + rerank     the export embeds, the reranker (trained in {summary['rerank_seconds']:.0f} s) "
        f"scores each query's top {summary['candidates']}:"
    )
    fused, weight, chosen = summary["fused"], summary["weight"], summary["eval"]
    click.echo(row("embedding search", search))
    click.echo(row(f"reranker alone, top {summary['candidates']}", reranked))
    click.echo(row(f"final: fused, top {summary['candidates']}", fused))
    click.echo(
        f"  {'':<30}final order: {weight:.1f} x z(cosine) + {1 - weight:.1f} x z(reranker logit), z-scored "
        f"over each query's top {summary['candidates']};"
    )
    click.echo(
        f"  {'':<30}the weight chosen on the {chosen['queries']} evaluation queries by the one-standard-error "
        f"rule (best mean at {chosen['best_mean']:.1f});"
    )
    click.echo(
        f"  {'':<30}there ndcg@10 {chosen['fused']['ndcg@10']:.3f} fused, {chosen['embedding']['ndcg@10']:.3f} "
        f"search alone, {chosen['reranker']['ndcg@10']:.3f} reranker alone"
    )
    verdict = (
        " (weight 1: the search's order; on eval the reranker did not help by more than the noise)"
        if weight == 1.0
        else ""
    )
    click.echo(f"  {'':<30}ndcg@10 {fused['ndcg@10'] - search['ndcg@10']:+.3f} from reranking{verdict}")
    example = summary["example"]
    click.echo(f'  sample query        "{example["query"]}"')
    for name in ("search", "fused"):
        for place, hit in enumerate(example[name], 1):
            mark = "*" if hit["relevant"] else " "
            click.echo(
                f"    {name if place == 1 else '':<9}{place}.{mark} cosine {hit['cosine']:.3f}  "
                f"rerank {hit['rerank_score']:.3f}  fused {hit['fused']:+.2f}  {hit['text'][:60]}"
            )
    click.echo("    (* the query's own document)")
    out = summary["output"]
    click.echo(
        f'  next                zoo embed {out}/embedding-export "some text"; '
        f'zoo rerank {out}/reranker -q "query" "text 1" "text 2"'
    )
