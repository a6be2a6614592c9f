"""Text -> padded id arrays with a Hugging Face ``tokenizers.Tokenizer``. numpy only: no torch here,
so serving an export needs neither torch nor transformers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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


def encode_rows(
    tokenizer,
    texts: Sequence,
    pairs: Sequence[str] | None = None,
    max_length: int | None = 512,
    pretokenized: bool | None = None,
) -> list:
    """One unpadded ``tokenizers.Encoding`` per row, cut at ``max_length`` (None: whole, for windows): texts,
    text pairs, or word lists (``pretokenized``; by default when the texts are lists of words)."""
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length)
    if pretokenized is None:
        pretokenized = bool(texts) and isinstance(texts[0], list)
    if pretokenized:
        return tokenizer.encode_batch(list(texts), is_pretokenized=True)
    if pairs is not None:
        return tokenizer.encode_batch(list(zip(texts, pairs)))
    return tokenizer.encode_batch(list(texts))


def ids_of(encodings: Sequence) -> list:
    """The int64 token ids of each encoding; a row of several encodings (Task.inputs of a task with
    several sequences per row) gives a list of arrays."""
    return [
        [np.asarray(x.ids, dtype=np.int64) for x in e]
        if isinstance(e, (list, tuple))
        else np.asarray(e.ids, dtype=np.int64)
        for e in encodings
    ]


def encode(
    tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int = 512
) -> tuple[np.ndarray, np.ndarray]:
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
    """A BERT-style WordPiece tokenizer ([PAD]=0, [UNK], [CLS], [SEP], [MASK]) for ``texts``.

    ``texts`` may hold strings or word lists; the vocabulary has at most ``vocab_size`` entries: the
    special tokens, every character seen (alone and as a ``##`` continuation), then the word prefixes and
    ``##`` suffixes that save the most characters over the corpus. Ties are broken by the piece itself,
    so the same texts give the same tokenizer in every process (the `tokenizers` trainer breaks ties in
    hash order, which changes from process to process).
    """
    from collections import Counter

    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from tokenizers.processors import BertProcessing

    normalizer = BertNormalizer(
        lowercase=lowercase, strip_accents=None, clean_text=True, handle_chinese_chars=True
    )
    pre_tokenizer = BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        line = normalizer.normalize_str(" ".join(text) if isinstance(text, list) else text)
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(line))
    chars: Counter[str] = Counter()
    for word, count in words.items():
        for ch in word:
            chars[ch] += count
    # every character alone and as a continuation, the most frequent first if they do not all fit
    keep = max(0, (vocab_size - len(SPECIAL_TOKENS)) // 2)
    alphabet = sorted(ch for ch, _ in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))[:keep])
    vocab = [*SPECIAL_TOKENS, *alphabet, *(f"##{ch}" for ch in alphabet)]
    saved: Counter[str] = Counter()  # characters a piece saves against spelling it out letter by letter
    for word, count in words.items():
        for i in range(2, len(word) + 1):
            saved[word[:i]] += count * (i - 1)
        for i in range(1, len(word) - 1):
            saved["##" + word[i:]] += count * (len(word) - i - 1)
    room = max(0, vocab_size - len(vocab))
    vocab += [piece for piece, _ in sorted(saved.items(), key=lambda kv: (-kv[1], kv[0]))[:room]]
    tokenizer = Tokenizer(
        WordPiece(
            {token: i for i, token in enumerate(vocab)},
            unk_token="[UNK]",
            continuing_subword_prefix="##",
            max_input_chars_per_word=100,
        )
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))  # "[MASK]" in a text is the mask token, as in BERT's
    return tokenizer
