"""A text corpus as a stream of packed blocks for pre-training: documents are tokenized a chunk at a time,
joined with [SEP] and cut into blocks of exactly ``length`` tokens that start with [CLS], so no step is
spent on padding and memory stays constant however large the file. Every ``holdout``-th document is held
out for evaluation. Training blocks pass through a seeded shuffle buffer and the corpus is read again as
often as the run needs; the stream is the same on every process and after a resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data import iter_tables
from zoo.errors import ZooError

CHUNK_DOCS = 1024  # documents tokenized at once


def documents(
    path: str | Path,
    holdout: int,
    held_out: bool | None,
    *,
    text_column: str | None = None,
    encoding: str | None = None,
) -> Iterator[str]:
    """A corpus's documents in file order: all (None), the held-out ones (every ``holdout``-th; True) or the
    training ones (False). .txt: one document per line; .csv/.tsv/.jsonl: the text column."""
    index = 0
    for table in iter_tables(
        path, CHUNK_DOCS, require_labels=False, text_column=text_column, encoding=encoding
    ):
        for text in table.texts:
            text = " ".join(text) if isinstance(text, list) else text
            if held_out is None or (holdout > 0 and index % holdout == 0) == held_out:
                yield text
            index += 1


class Corpus:
    def __init__(
        self,
        path: str | Path,
        tokenizer: Any,
        length: int,
        *,
        holdout: int = 20,
        shuffle: int = 1024,
        seed: int = 0,
        text_column: str | None = None,
        encoding: str | None = None,
    ):
        from tokenizers import Tokenizer

        if length < 2:
            raise ZooError(f"max-length must be at least 2 for packed blocks, got {length}")
        self.path, self.length, self.holdout, self.shuffle, self.seed = (
            Path(path),
            length,
            holdout,
            shuffle,
            seed,
        )
        self.columns = {"text_column": text_column, "encoding": encoding}
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: no truncation, no padding
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.cls_id, self.sep_id = (self._special(t) for t in ("[CLS]", "[SEP]"))

    def _special(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ZooError(f"the model's tokenizer has no {token} token, which packed pre-training needs")
        return found

    def _pieces(self, held_out: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, word starts) per document, [SEP] appended, in file order."""
        chunk: list[str] = []
        for text in documents(self.path, self.holdout, held_out, **self.columns):
            chunk.append(text)
            if len(chunk) == CHUNK_DOCS:
                yield from self._encode(chunk)
                chunk = []
        if chunk:
            yield from self._encode(chunk)

    def _encode(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False):
            words = encoding.word_ids
            starts = [w is None or i == 0 or w != words[i - 1] for i, w in enumerate(words)]
            yield (
                np.asarray([*encoding.ids, self.sep_id], dtype=np.int64),
                np.asarray([*starts, True], dtype=bool),
            )

    # ---- blocks -----------------------------------------------------------------------------------
    def _pack(
        self, pieces: Iterator[tuple[np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        body = self.length - 1
        ids, starts, size = [], [], 0
        for piece_ids, piece_starts in pieces:
            ids.append(piece_ids)
            starts.append(piece_starts)
            size += len(piece_ids)
            if size < body:
                continue
            flat_ids, flat_starts = np.concatenate(ids), np.concatenate(starts)
            cut = (len(flat_ids) // body) * body
            for at in range(0, cut, body):
                yield (
                    np.concatenate([[self.cls_id], flat_ids[at : at + body]]),
                    np.concatenate([[True], flat_starts[at : at + body]]),
                )
            ids, starts, size = [flat_ids[cut:]], [flat_starts[cut:]], len(flat_ids) - cut

    def eval_blocks(self, count: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Up to ``count`` blocks of the held-out documents (one pass, no shuffle), as (ids, starts)
        arrays (N, length); None when nothing is held out or it makes no whole block."""
        if self.holdout <= 0 or count <= 0:
            return None
        blocks = []
        for block in self._pack(self._pieces(held_out=True)):
            blocks.append(block)
            if len(blocks) == count:
                break
        if not blocks:
            return None
        return np.stack([b[0] for b in blocks]), np.stack([b[1] for b in blocks])

    def train_blocks(self, skip: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The endless training stream: pass after pass over the training documents, each pass's blocks
        through a shuffle buffer seeded by (seed, pass); the first ``skip`` blocks are dropped (a resume)."""
        done = 0
        for number in range(1 << 62):
            rng = np.random.default_rng([self.seed, number])
            buffer: list[tuple[np.ndarray, np.ndarray]] = []
            produced = 0
            for block in self._pack(self._pieces(held_out=False)):
                produced += 1
                if len(buffer) < self.shuffle:
                    buffer.append(block)
                    continue
                i = int(rng.integers(len(buffer)))
                block, buffer[i] = buffer[i], block
                done += 1
                if done > skip:
                    yield block
            if produced == 0:
                raise ZooError(
                    f"{self.path}: the training documents make no block of {self.length} tokens; "
                    "give more text or a smaller --max-length"
                )
            for i in rng.permutation(len(buffer)):
                done += 1
                if done > skip:
                    yield buffer[i]
