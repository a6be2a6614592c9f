"""The WordPiece tokenizer trained for from-scratch models, and torch-free encoding."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from zoo.tokenizer import SPECIAL_TOKENS, encode, train_wordpiece

TRAIN = (
    "import random, sys; from zoo.tokenizer import train_wordpiece; r = random.Random(0); "
    "w = 'great fine love awful hate poor the a movie film plot acting was is really'.split(); "
    "sys.stdout.write(train_wordpiece([' '.join(r.choice(w) for _ in range(6)) for _ in range(300)], 70).to_str())"
)


def test_same_texts_give_the_same_tokenizer_in_every_process():
    """The trainer numbers tokens in hash order, which differs between processes; zoo renumbers them."""
    runs = {
        subprocess.run([sys.executable, "-c", TRAIN], capture_output=True, text=True, check=True).stdout
        for _ in range(3)
    }
    assert len(runs) == 1


def test_special_tokens_and_bert_layout():
    tokenizer = train_wordpiece(["good film", "bad film", "a good plot"] * 10, 40)
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    enc = tokenizer.encode("good film", "bad plot")
    assert enc.tokens[0] == "[CLS]" and enc.tokens.count("[SEP]") == 2
    assert tokenizer.encode("GOOD").tokens == tokenizer.encode("good").tokens  # lowercased


def test_encode_pads_to_the_longest_row_and_truncates():
    tokenizer = train_wordpiece(["one two three four five six"] * 5, 80)
    ids, mask = encode(tokenizer, ["one", "one two three four five six"], max_length=5)
    assert ids.dtype == np.int64 and ids.shape == (2, 5)
    short = len(tokenizer.encode("one").ids)
    assert short < 5
    assert mask.tolist() == [[1] * short + [0] * (5 - short), [1] * 5]
    assert ids[0, short:].tolist() == [0] * (5 - short)  # [PAD]
    assert ids[1, -1] == tokenizer.token_to_id("[SEP]")


@pytest.mark.parametrize("vocab_size", [8, 30, 200])
def test_vocabulary_never_exceeds_the_model_size(vocab_size):
    texts = ["Ünïcode and emoji 😀 tweets, #hashtags @users http://x.co/abc"] * 3 + ["plain words here"] * 5
    tokenizer = train_wordpiece(texts, vocab_size)
    assert tokenizer.get_vocab_size() <= vocab_size
    ids, _ = encode(tokenizer, texts)
    assert ids.max() < vocab_size


def test_frequent_words_become_single_pieces():
    tokenizer = train_wordpiece(["the film was wonderful"] * 50 + ["a film"] * 3, 100)
    assert tokenizer.encode("wonderful film").tokens == ["[CLS]", "wonderful", "film", "[SEP]"]
