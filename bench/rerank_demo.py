"""Reranker variants for `zoo demo --task retrieval`, on a finished demo directory (its data splits, its
fine-tuned embedding model and export): train a cross-encoder with the given settings, score each eval and
test query's top 10 (the export's search), and print the metrics of the search, the reranker alone, the fused
order at every weight, and the weight the demo's one-standard-error rule picks on eval. bench/NOTES.md
("Retrieval demo reranker") lists the runs.

    zoo demo --task retrieval -o /tmp/rr-base
    python bench/rerank_demo.py /tmp/rr-base R5 init=embedding hard=4 easy=1 lr=5e-5 epochs=8 batch=8

Settings: init (checkpoint | embedding: the fine-tuned encoder), hard, easy (negatives per training query),
lr, epochs, batch, length (tokens per pair), pooling (cls | mean), eval_rows (hard: the old 2 hard + 2 random
rows | candidates: the eval queries' search candidates), threads, seed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DEFAULTS = dict(
    init="embedding",
    hard=4,
    easy=1,
    lr=5e-5,
    epochs=3,
    batch=8,
    length=64,
    pooling="cls",
    eval_rows="candidates",
    threads=1,
    seed=0,
)


def main(argv: list[str]) -> None:
    import zoo.retrieval_demo as demo
    from zoo.export.runtime import OnnxModel
    from zoo.hf import default_checkpoint, import_pretrained
    from zoo.inference import ModelPredictor, load_predictor
    from zoo.model import load_model
    from zoo.threads import use
    from zoo.training.config import TrainConfig
    from zoo.training.recipe import finetune

    source, name = Path(argv[0]), argv[1]
    opts: dict = dict(DEFAULTS)
    for item in argv[2:]:
        key, value = item.split("=", 1)
        opts[key] = type(DEFAULTS[key])(value)
    use(opts["threads"])
    out = Path("/tmp/rerank-bench") / name
    out.mkdir(parents=True, exist_ok=True)
    tuned = ModelPredictor(load_model(source / "embedding"))
    tables = {n: tuned.model.task.read(source / "data" / f"{n}.csv") for n in ("train", "eval", "test")}
    served = OnnxModel(source / "embedding-export", warn=False)
    demo.HARD, demo.EASY = opts["hard"], opts["easy"]
    train = demo.write_rerank_rows(tuned, tables["train"], out / "train.csv", opts["seed"])
    if opts["eval_rows"] == "candidates":
        evaluation = demo.write_candidate_rows(served, tables["eval"], out / "eval.csv", 10)
    else:
        demo.HARD, demo.EASY = 2, 2
        evaluation = demo.write_rerank_rows(tuned, tables["eval"], out / "eval.csv", opts["seed"])
    start = time.perf_counter()
    reranker = import_pretrained(
        default_checkpoint(),
        head="rerank",
        seed=opts["seed"],
        max_length=opts["length"],
        head_options={"pooling": opts["pooling"]},
    )
    if opts["init"] == "embedding":
        reranker.encoder.load_state_dict(tuned.model.encoder.state_dict())
    config = TrainConfig(
        batch_size=opts["batch"],
        lr=opts["lr"],
        epochs=opts["epochs"],
        max_length=opts["length"],
        seed=opts["seed"],
        num_threads=opts["threads"],
    )
    finetune(reranker, train, eval=evaluation, output=out / "reranker", config=config, progress=False)
    seconds = time.perf_counter() - start
    predictor = load_predictor(out / "reranker")
    result: dict = {"name": name, "opts": opts, "train_seconds": round(seconds, 1)}
    for split in ("eval", "test"):
        scores = demo.candidate_scores(served, predictor, tables[split], 10)
        weight, curve = demo.choose_weight(scores)
        result[split] = {
            "one_se_weight": weight,
            "curve": {w: [round(m["ndcg@10"], 4), round(m["mrr@10"], 4)] for w, m in curve.items()},
        }
    weight = result["eval"]["one_se_weight"]
    result["chosen_on_eval"] = weight
    result["test_at_chosen"] = result["test"]["curve"][weight]
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
