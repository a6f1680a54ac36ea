"""A word-level tokenizer whose vocabulary is built from the captions themselves.

The shapes captions use a closed vocabulary of a few dozen words, so a word-level vocabulary is
exact, needs no download, and is identical in every worker for the same captions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

PAD, CLS, UNK = "[PAD]", "[CLS]", "[UNK]"


@dataclass(frozen=True)
class WordTokenizer:
    vocab: tuple[str, ...]
    max_length: int

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> WordTokenizer:
        texts = list(texts)
        words = sorted({w for t in texts for w in t.lower().split()})
        longest = max((len(t.split()) for t in texts), default=0)
        return cls(vocab=(PAD, CLS, UNK, *words), max_length=longest + 1)

    @property
    def pad_id(self) -> int:
        return 0

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), max_length) int64 ids: [CLS] then words, right-padded with [PAD]."""
        index = {w: i for i, w in enumerate(self.vocab)}
        unk = index[UNK]
        ids = torch.zeros((len(texts), self.max_length), dtype=torch.int64)
        for row, text in enumerate(texts):
            tokens = [index[CLS]] + [index.get(w, unk) for w in text.lower().split()]
            tokens = tokens[: self.max_length]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
        return ids
