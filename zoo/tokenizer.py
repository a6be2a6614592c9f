"""Text -> padded id arrays with a Hugging Face ``tokenizers.Tokenizer``. numpy only: no torch here,
so serving an export needs neither torch nor transformers."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ZooError


def load_tokenizer(path: str | Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ZooError(f"{path}: not a valid tokenizer.json ({exc})") from None


def pad_id(tokenizer) -> int:
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None,
           max_length: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int64 (B, S), padded to the longest row and cut at max_length."""
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    batch = list(zip(texts, pairs)) if pairs is not None else list(texts)
    encodings = tokenizer.encode_batch(batch)
    length = max((len(e.ids) for e in encodings), default=0)
    ids = np.full((len(encodings), max(length, 1)), pad_id(tokenizer), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    return ids, mask


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(texts, vocab_size: int, lowercase: bool = True):
    """A BERT-style WordPiece tokenizer ([PAD]=0, [UNK], [CLS], [SEP], [MASK]) trained on ``texts``.

    ``texts`` may hold strings or word lists; the vocabulary has at most ``vocab_size`` entries. The
    trainer numbers tokens in hash order, which changes from process to process; renumbering them in
    sorted order makes the same texts give the same ids in every run (WordPiece's longest-match
    tokenisation does not depend on the numbering).
    """
    from tokenizers.implementations import BertWordPieceTokenizer
    from tokenizers.models import WordPiece
    from tokenizers.processors import BertProcessing

    wordpiece = BertWordPieceTokenizer(lowercase=lowercase)
    lines = (" ".join(t) if isinstance(t, list) else t for t in texts)
    wordpiece.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS))
    tokenizer = wordpiece._tokenizer
    learned = sorted(t for t in tokenizer.get_vocab() if t not in SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *learned])}
    tokenizer.model = WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    tokenizer.post_processor = BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
