"""Texts longer than the model (--long-text window): window boundaries and special tokens on a tokenizer with
known ids, the combination of outputs per task, token stitching, texts at, just over and far over the limit,
training on windows, the export's parity with the eager model on long texts, and the once-per-run message."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo import testing
from zoo.data import Table
from zoo.errors import ZooError
from zoo.inference import ModelPredictor, predict_table, table_outputs
from zoo.model import build_model
from zoo.tasks import load_task
from zoo.windows import LongText, Windows, cut_message, windows_of

CLS, SEP, FIRST = 2, 3, 4  # [CLS], [SEP], and the id of word "t0" (word "tN" has id FIRST + N)
WORDS = 400


def known_tokenizer():
    """A word-level tokenizer whose ids are known: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3, "tN" = 4 + N."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"t{i}" for i in range(WORDS)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", SEP), ("[CLS]", CLS))
    return tokenizer


def text(n: int, start: int = 0) -> str:
    return " ".join(f"t{(start + i) % WORDS}" for i in range(n))


def encodings(*lengths: int) -> list:
    tokenizer = known_tokenizer()
    tokenizer.no_truncation()
    return tokenizer.encode_batch([text(n) for n in lengths])


# ---- windows on token ids -----------------------------------------------------------------------------


def test_windows_keep_the_special_tokens_and_overlap_by_the_stride():
    """max_length 10 leaves 8 text tokens a window; stride 2 moves each window 6 on; the last ends at the text's end."""
    (e,) = encodings(20)
    w = windows_of(e, 10, 2)
    assert (w.starts, w.size, w.head, w.tail, w.length) == ([0, 6, 12], 8, 1, 1, 22)
    pieces = w.cut(np.asarray(e.ids))
    expected = [[CLS, *range(FIRST + s, FIRST + s + 8), SEP] for s in (0, 6, 12)]
    assert [p.tolist() for p in pieces] == expected


def test_a_text_exactly_at_the_limit_is_one_window_equal_to_the_truncated_encoding():
    (e,) = encodings(8)  # 8 words + [CLS] + [SEP] = 10 tokens
    w = windows_of(e, 10, None)
    assert len(w) == 1 and w.cut(np.asarray(e.ids))[0].tolist() == e.ids
    tokenizer = known_tokenizer()
    tokenizer.enable_truncation(10)
    assert tokenizer.encode(text(8)).ids == e.ids
    assert cut_message([tokenizer.encode(text(8))], 10) is None  # nothing was cut


def test_one_token_over_the_limit_makes_two_windows_that_cover_every_token():
    (e,) = encodings(9)  # 11 tokens, one more than max_length 10
    w = windows_of(e, 10, 2)
    assert w.starts == [0, 1]  # the second window ends at the text's end
    pieces = w.cut(np.asarray(e.ids))
    assert [p.tolist() for p in pieces] == [
        [CLS, *range(FIRST, FIRST + 8), SEP],
        [CLS, *range(FIRST + 1, FIRST + 9), SEP],
    ]


@pytest.mark.parametrize("stride", [None, 0, 3, 7])
def test_a_text_many_windows_long_is_covered_in_order_by_full_windows(stride):
    (e,) = encodings(237)
    w = windows_of(e, 16, stride)
    pieces = w.cut(np.asarray(e.ids))
    size, overlap = 14, 14 // 4 if stride is None else stride
    assert len(pieces) == 1 + -(-(237 - size) // (size - overlap))
    assert all(len(p) == 16 and p[0] == CLS and p[-1] == SEP for p in pieces)
    covered = np.zeros(237, dtype=bool)
    for start, piece in zip(w.starts, pieces):
        assert piece[1:-1].tolist() == list(range(FIRST + start, FIRST + start + size))
        covered[start : start + size] = True
    assert covered.all()
    assert all(b - a == size - overlap for a, b in zip(w.starts[:-2], w.starts[1:-1]))


def test_windows_refuse_a_stride_as_long_as_a_window_and_long_text_pairs():
    (e,) = encodings(30)
    with pytest.raises(ZooError, match="--stride 8 must be smaller than a window's 8 text tokens"):
        windows_of(e, 10, 8)
    tokenizer = known_tokenizer()
    pair = tokenizer.encode(text(20), text(20))
    with pytest.raises(ZooError, match="splits single texts only"):
        windows_of(pair, 10, None)
    assert len(windows_of(tokenizer.encode(text(3), text(3)), 10, None)) == 1  # a pair that fits is fine


def test_long_text_settings_are_checked_and_recorded():
    assert LongText.from_record(None) == LongText() and not LongText().chosen
    recorded = LongText.from_record({"mode": "window", "stride": 5})
    assert recorded.windowed and recorded.chosen and recorded.stride == 5
    assert recorded.override(None, None) is recorded
    assert recorded.override("window-max", None).how == "max"
    with pytest.raises(ZooError, match="add --long-text window"):
        LongText().override(None, 4)
    with pytest.raises(ZooError, match=r"config\.json: 'long_text' must be an object"):
        LongText.from_record({"mode": "slide"})


# ---- combining outputs --------------------------------------------------------------------------------


def test_stitching_takes_each_token_from_the_window_where_it_is_most_central():
    """Window i's output at a token is i*1000 + the token's position in the whole sequence, so the stitched
    output tells which window each token came from and that it landed in its own place."""
    (e,) = encodings(20)
    w = windows_of(e, 10, 4)  # size 8, step 4: starts 0, 4, 8, 12
    assert w.starts == [0, 4, 8, 12]
    outputs = []
    for i, start in enumerate(w.starts):
        positions = [0, *range(1 + start, 1 + start + 8), 21]
        outputs.append(np.asarray([[i * 1000 + p] for p in positions], dtype=np.float32))
    stitched = w.stitch(outputs)[:, 0].astype(int)
    assert stitched.shape == (22,)
    assert (stitched % 1000).tolist() == list(range(22))  # every token in its own place
    # body token j sits at margin min(j - s, s + 7 - j) in the window from s; the most central wins, the
    # earlier window on a tie. By hand: token 5 has margins 2 (window 0) and 1 (window 1): window 0; token 6
    # has 1 and 2: window 1; ... tokens 14-19 are only central in the last window.
    by_hand = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    assert (stitched[1:21] // 1000).tolist() == by_hand
    assert stitched[0] // 1000 == 0 and stitched[21] // 1000 == 3  # [CLS] from the first, [SEP] from the last


@pytest.mark.parametrize("name", testing.parts("task"))
def test_every_task_combines_copies_of_one_output_into_that_output(name):
    """Whatever a task's combination, k windows that say the same thing combine to what they say, with the
    shape of one window's output (a unit vector stays a unit vector)."""
    task = load_task(name)
    rng = np.random.default_rng(0)
    if task.per_token:  # (tokens, labels)
        one = rng.normal(size=(8, 3)).astype(np.float32)
    else:  # a unit vector, so that an embedding's renormalisation has something to keep
        one = rng.normal(size=4).astype(np.float32)
        one /= np.linalg.norm(one)
    for how in ("mean", "max"):
        combined = task.combine([one, one, one], Windows([0, 0, 0], 6, 1, 1, 8), how)
        assert combined.shape == one.shape
        np.testing.assert_allclose(combined, one, rtol=1e-6, atol=1e-6)


def test_sequence_tasks_average_or_max_pool_logits():
    x = [np.array([1.0, 4.0, -2.0]), np.array([3.0, 0.0, 2.0])]
    for name in ("classification", "multilabel", "regression"):
        task = load_task(name)
        np.testing.assert_allclose(task.combine(x, None, "mean"), [2.0, 2.0, 0.0])
        np.testing.assert_allclose(task.combine(x, None, "max"), [3.0, 4.0, 2.0])


def test_embeddings_average_and_renormalise_only_unit_vectors():
    task = load_task("embedding")
    a, b = np.array([1.0, 0.0], dtype=np.float32), np.array([0.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(task.combine([a, b], None), [2**-0.5, 2**-0.5], rtol=1e-6)
    np.testing.assert_allclose(task.combine([2 * a, 4 * b], None), [1.0, 2.0])  # raw vectors: just the mean


# ---- through the predictors, the trainer, the export -------------------------------------------------


def tiny(head: str = "cls", labels=("a", "b", "c"), max_length: int = 16, long_text=None):
    tokenizer = known_tokenizer()
    model = build_model(
        "transformer",
        head,
        "sdpa",
        labels=list(labels) if labels else None,
        d_model=16,
        num_layers=1,
        num_heads=2,
        vocab_size=tokenizer.get_vocab_size(),
        max_length=64,
        dropout=0.0,
        seed=0,
    )
    model.tokenizer = tokenizer
    model.spec.tokenizer["max_length"] = max_length
    model.spec.tokenizer["pad_id"] = 0
    if long_text:
        model.spec.tokenizer["long_text"] = long_text.record()
    return model.eval()


def long_table(lengths=(5, 14, 15, 40, 61)) -> Table:
    texts = [text(n, start=7 * i) for i, n in enumerate(lengths)]
    return Table("long", texts, None, None, list(range(1, len(texts) + 1)))


def test_windowed_outputs_are_the_mean_of_the_model_on_each_window():
    """The reference: the model run on each window alone (hand-cut ids), averaged per text."""
    model = tiny(long_text=LongText("window", 3))
    predictor = ModelPredictor(model)
    lengths = (5, 14, 15, 40, 61)
    _, outputs = table_outputs(predictor, long_table(lengths), batch_size=3)
    tokenizer = known_tokenizer()
    for i, (row, n) in enumerate(zip(outputs, lengths)):
        ids = tokenizer.encode(text(n, start=7 * i)).ids
        body, size, step = ids[1:-1], 14, 11
        starts = [min(i * step, len(body) - size) for i in range(1 + max(0, -(-(len(body) - size) // step)))]
        with torch.no_grad():
            reference = np.mean(
                [
                    model(
                        torch.tensor([[CLS, *body[s : s + size], SEP]]),
                        torch.ones(1, len(body[s : s + size]) + 2),
                    ).numpy()[0]
                    for s in starts
                ],
                axis=0,
            )
        np.testing.assert_allclose(row, reference, rtol=1e-4, atol=1e-5)


def test_token_classification_predicts_every_word_of_a_long_text():
    model = tiny("token-cls", labels=("O", "X"), long_text=LongText("window"))
    table = Table("t", [text(50).split()], None, None, [1])
    (result,) = predict_table(ModelPredictor(model), table)
    assert len(result["labels"]) == 50 and None not in result["labels"]
    truncated = ModelPredictor(model)
    truncated.long_text = LongText("truncate", chosen=True)
    (cut,) = predict_table(truncated, table)
    assert cut["labels"][14:] == [None] * 36 and None not in cut["labels"][:14]


def test_the_cut_message_comes_once_per_run_with_counts_by_hand(capsys):
    model = tiny()
    predictor = ModelPredictor(model)
    table = long_table((5, 14, 15, 40, 61))  # max_length 16 keeps 14 words: 15, 40 and 61 lose 1, 26, 47
    table_outputs(predictor, table)
    table_outputs(predictor, table)  # the same run (predictor): said once
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "zoo: 3 of 5 texts are longer than 16 tokens and were cut (by 25 tokens on average); "
        "--long-text window reads them whole"
    ]
    chosen = ModelPredictor(model)
    chosen.long_text = LongText("truncate", chosen=True)
    table_outputs(chosen, table)
    assert capsys.readouterr().err == ""  # asked for truncation: no message


def test_finetune_on_windows_records_the_setting_and_weights_each_text_once(tmp_path):
    from zoo.training import TrainConfig, finetune
    from zoo.training.recipe import FineTuneRecipe

    rows = [(text(6 + 9 * i, start=i), "ab"[i % 2]) for i in range(12)]
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    config = TrainConfig(epochs=1, batch_size=4, max_length=16, long_text="window", stride=2, curves=False)
    model = tiny(labels=None)
    result = finetune(model, train, output=tmp_path / "out", eval=train, config=config, progress=False)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["tokenizer"]["long_text"] == {"mode": "window", "stride": 2}
    assert result.history[0]["eval"]["loss"] > 0
    # the rows: one per window, each weighted 1 / its text's windows
    recipe = FineTuneRecipe.__new__(FineTuneRecipe)
    recipe.model, recipe.task, recipe.config = model, model.task, config
    ids, targets, weights = recipe._encode(model.task.read(train), ["a", "b"], 2)
    counts = [len(windows_of(e, 16, 2)) for e in encodings(*[6 + 9 * i for i in range(12)])]
    assert len(ids) == sum(counts) and len(targets) == len(ids)
    np.testing.assert_allclose(weights, [1 / k for k in counts for _ in range(k)])
    # the weighted loss: the mean over rows of weight x the row's cross-entropy, by hand
    logits = torch.randn(4, 2)
    labels = torch.tensor([0, 1, 1, 0])
    w = torch.tensor([1.0, 0.5, 0.5, 0.25])
    batch = {"labels": labels, "attention_mask": torch.ones(4, 3), "weights": w}
    expected = (torch.nn.functional.cross_entropy(logits, labels, reduction="none") * w).mean()
    torch.testing.assert_close(recipe._loss(logits, batch), expected)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["cls", "token-cls", "embedding"])
def test_an_export_reads_long_texts_as_the_eager_model_does(head, tmp_path):
    """OnnxModel (no flag: the manifest says window) against the eager model, on texts several windows long."""
    from zoo.export import export_model
    from zoo.export.runtime import OnnxModel

    labels = {"cls": ("a", "b", "c"), "token-cls": ("O", "X"), "embedding": None}[head]
    model = tiny(head, labels=labels, long_text=LongText("window", 4))
    export_model(model, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["tokenizer_settings"]["long_text"] == {"mode": "window", "stride": 4}
    onnx = OnnxModel(tmp_path / "out")
    assert onnx.long_text == LongText("window", 4, chosen=True)
    lengths = (3, 14, 30, 57, 90)
    if head == "token-cls":
        table = Table(
            "t", [text(n, 5 * i).split() for i, n in enumerate(lengths)], None, None, [1, 2, 3, 4, 5]
        )
    else:
        table = long_table(lengths)
    _, eager = table_outputs(ModelPredictor(model), table, batch_size=4)
    _, exported = table_outputs(onnx, table, batch_size=4)
    assert [e.shape for e in eager] == [x.shape for x in exported]
    for e, x in zip(eager, exported):
        np.testing.assert_allclose(x, e, rtol=1e-3, atol=1e-4)
    served = _served(tmp_path / "out", table)  # zoo serve's own path: batcher, windows, combination
    for e, x in zip(eager, served):
        np.testing.assert_allclose(x, e, rtol=1e-3, atol=1e-4)
    if head != "embedding":  # the same answers
        key = "label" if head == "cls" else "labels"
        answers = [[r[key] for r in predict_table(p, table)] for p in (onnx, ModelPredictor(model))]
        assert answers[0] == answers[1]


def _served(directory, table: Table) -> list[np.ndarray]:
    """The outputs `zoo serve` gives for a table (its Service, in this process; no flag: the manifest)."""
    import asyncio

    pytest.importorskip("starlette")
    from zoo.serve.app import ServeConfig, Service, info

    async def run():
        service = Service(ServeConfig(str(directory), max_batch_tokens=64))
        await service.load(on_failure=pytest.fail)
        try:
            _, outputs = await service.predict(table, truncate=False)  # long texts: no 422, no cut
            described = json.loads((await info(service, None)).body)
            assert (
                described["max_input_length"] is None
                and described["window_length"] == service.predictor.max_length
            )
            assert described["long_text"] == service.predictor.long_text.record()
        finally:
            await service.batcher.stop()
        return outputs

    return asyncio.run(run())


def test_the_commands_take_long_text_and_stride(tmp_path):
    from click.testing import CliRunner

    from zoo.cli import cli

    model = tiny()
    model.save(tmp_path / "m")
    long = text(45)
    run = CliRunner().invoke
    result = run(
        cli, ["predict", str(tmp_path / "m"), long, "--json", "--long-text", "window", "--stride", "2"]
    )
    assert result.exit_code == 0, result.output
    windowed = ModelPredictor(model)
    windowed.long_text = LongText("window", 2, chosen=True)
    (want,) = predict_table(windowed, Table("t", [long], None, None, [1]))
    got = json.loads(result.stdout)
    assert got["label"] == want["label"] and got["probability"] == pytest.approx(
        want["probability"], abs=1e-5
    )
    assert "were cut" not in result.output  # windows cut nothing
    result = run(cli, ["predict", str(tmp_path / "m"), long, "--stride", "2"])
    assert (
        result.exit_code == 2
        and "--stride sets how much windows overlap; add --long-text window" in result.output
    )
    data = tmp_path / "d.csv"
    data.write_text(f"text,label\n{long},a\n{text(3)},b\n")
    result = run(
        cli, ["evaluate", str(tmp_path / "m"), "--data", str(data), "--long-text", "window-max", "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["task"] == "classification"
