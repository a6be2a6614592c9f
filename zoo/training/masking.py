"""Dynamic masking for masked-language-model pre-training (BERT's recipe, with the rate as an option).

Each token that is not special is chosen with probability ``rate`` (or, with whole-word masking, each word
is, and all its pieces with it). Of the chosen tokens 80% become [MASK], 10% a random ordinary token and
10% stay as they are; the labels hold the original id at chosen positions and IGNORE_INDEX elsewhere, so
the loss sees only them (sparse prediction). Masks are drawn anew every time a block is seen."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from zoo.constants import IGNORE_INDEX


@dataclass
class MaskingConfig:
    mask_id: int
    special_ids: tuple[int, ...]  # never masked, never drawn as a random replacement
    vocab_size: int  # the tokenizer's vocabulary (random replacements come from it)
    rate: float = 0.3
    mask_share: float = 0.8  # of the chosen tokens: [MASK]
    random_share: float = 0.1  # of the chosen tokens: a random token (the rest stay unchanged)

    def __post_init__(self) -> None:
        special = torch.tensor(sorted(set(self.special_ids)), dtype=torch.long)
        keep = torch.ones(self.vocab_size, dtype=torch.bool)
        keep[special[special < self.vocab_size]] = False
        self.ordinary = keep.nonzero().flatten()  # the ids a random replacement is drawn from
        self.special = special


def mask_tokens(
    ids: Tensor, config: MaskingConfig, generator: torch.Generator, word_starts: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(input_ids, labels) for a (B, S) batch of token ids. ``word_starts`` (B, S) bool, True where a word
    begins: whole-word masking, where a word's pieces are chosen together."""
    ids = ids.long()
    maskable = ~torch.isin(ids, config.special)
    draw = torch.rand(ids.shape, generator=generator)
    if word_starts is not None:
        # each word takes the draw of its first piece; a special token starts a word of its own
        starts = word_starts.bool() | ~maskable
        word = torch.cumsum(starts.long(), dim=1) - 1  # (B, S) word index within the row
        first = torch.where(starts, draw, torch.full_like(draw, 2.0))
        per_word = torch.full_like(draw, 2.0).scatter_reduce(1, word, first, reduce="amin")
        draw = per_word.gather(1, word)
    chosen = maskable & (draw < config.rate)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    how = torch.rand(ids.shape, generator=generator)
    to_mask = chosen & (how < config.mask_share)
    to_random = chosen & (how >= config.mask_share) & (how < config.mask_share + config.random_share)
    random_ids = config.ordinary[torch.randint(0, len(config.ordinary), ids.shape, generator=generator)]
    out = torch.where(to_mask, torch.full_like(ids, config.mask_id), ids)
    out = torch.where(to_random, random_ids, out)
    return out, labels
