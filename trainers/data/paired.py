"""What every paired data set hands the trainer: two splits of matched inputs, what the towers
must accept, and (where the data has classes) one tower-b input per class for zero-shot use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from trainers.data.image_files import ImageFiles
from trainers.data.tokenizer import WordTokenizer


@dataclass(frozen=True)
class InputSpec:
    """The inputs of one modality: images (C, H, W), token ids (L,), vectors (d,), log-mel
    spectrograms (n_mels, frames) or graph neighbourhoods (1 + neighbours, features)."""

    kind: Literal["image", "tokens", "vector", "audio", "graph"]
    shape: tuple[int, ...]
    vocab_size: int = 0  # tokens only


@dataclass(frozen=True)
class PairedSplit:
    """One split: row i of `a` and of `b` is a matched pair. A folder's images are files read
    as batches need them (image_files.py)."""

    a: torch.Tensor | ImageFiles
    b: torch.Tensor
    match_ids: torch.Tensor  # pairs with equal ids are interchangeable in retrieval
    labels: torch.Tensor | None = None  # class of each pair, for zero-shot accuracy
    groups: torch.Tensor | None = None  # group of each pair, for per-group accuracy
    b_texts: tuple[str, ...] | None = None  # the captions, for towers with their own tokenizer
    # Rows with equal items show the same a-side input (an image with several captions): an
    # epoch passes over items, one caption of each (trainers/batches.py).
    items: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.a.shape[0])

    # The names of the shapes data set, which was the first and stays the common case.
    @property
    def images(self) -> torch.Tensor | ImageFiles:
        return self.a

    @property
    def tokens(self) -> torch.Tensor:
        return self.b

    @property
    def shape_ids(self) -> torch.Tensor | None:
        return self.labels

    @property
    def caption_ids(self) -> torch.Tensor:
        return self.match_ids


@dataclass(frozen=True)
class PairedData:
    train: PairedSplit
    eval: PairedSplit
    a_input: InputSpec
    b_input: InputSpec
    class_names: tuple[str, ...] = ()
    # Tower-b inputs of the class prompts for zero-shot classification, one row per prompt.
    # With `prompt_class` (the class of each row), a class has several: rows of one
    # `prompt_variant` say one thing in different words and are averaged, as CLIP's prompt
    # ensembles are; a class's variants are alternatives ("a small red circle", "a large blue
    # circle"), and the one an image is closest to counts. Without them, row k is class k.
    class_inputs: torch.Tensor | None = None
    class_texts: tuple[str, ...] | None = None
    tokenizer: WordTokenizer | None = None
    group_names: tuple[str, ...] = ()
    prompt_class: torch.Tensor | None = None
    prompt_variant: torch.Tensor | None = None

    def with_prompts(self, prompts: PromptEnsemble) -> PairedData:
        """The same data with `prompts` as its zero-shot class prompts."""
        return replace(
            self,
            class_inputs=prompts.inputs,
            class_texts=prompts.texts,
            prompt_class=prompts.owners,
            prompt_variant=prompts.variants,
        )

    def with_b_inputs(
        self,
        train: torch.Tensor,
        evaluation: torch.Tensor,
        spec: InputSpec,
        classes: torch.Tensor | None,
    ) -> PairedData:
        """The same pairs with tower b fed other inputs (a pretrained tower's own token ids)."""
        return replace(
            self,
            train=replace(self.train, b=train),
            eval=replace(self.eval, b=evaluation),
            b_input=spec,
            class_inputs=classes,
        )


@dataclass(frozen=True)
class PromptEnsemble:
    """Class prompts as PairedData holds them: `inputs` and `texts` one row per prompt,
    `owners` the class and `variants` the variant of each row."""

    inputs: torch.Tensor
    texts: tuple[str, ...]
    owners: torch.Tensor
    variants: torch.Tensor

    @classmethod
    def of(
        cls, tokenizer: WordTokenizer, prompts: Sequence[Sequence[Sequence[str]]]
    ) -> PromptEnsemble:
        """`prompts[k][v]`: the phrasings of variant v of class k."""
        rows = [
            (text, k, v)
            for k, variants in enumerate(prompts)
            for v, phrasings in enumerate(variants)
            for text in phrasings
        ]
        ids = {key: i for i, key in enumerate(dict.fromkeys((k, v) for _, k, v in rows))}
        return cls(
            tokenizer.encode_batch([text for text, _, _ in rows]),
            tuple(text for text, _, _ in rows),
            torch.tensor([k for _, k, _ in rows], dtype=torch.int64),
            torch.tensor([ids[k, v] for _, k, v in rows], dtype=torch.int64),
        )


def token_spec(tokenizer: WordTokenizer) -> InputSpec:
    return InputSpec("tokens", (tokenizer.max_length,), vocab_size=len(tokenizer.vocab))


def text_split(
    a: torch.Tensor | ImageFiles,
    captions: Sequence[str],
    tokenizer: WordTokenizer,
    labels: np.ndarray | None,
    groups: np.ndarray | None = None,
) -> PairedSplit:
    """A split whose tower b reads captions; equal captions are interchangeable in retrieval."""
    _, match = np.unique(np.asarray(captions), return_inverse=True)
    return PairedSplit(
        a=a,
        b=tokenizer.encode_batch(list(captions)),
        match_ids=torch.from_numpy(match.astype(np.int64)),
        labels=None if labels is None else torch.from_numpy(labels.astype(np.int64)),
        groups=None if groups is None else torch.from_numpy(groups.astype(np.int64)),
        b_texts=tuple(captions),
    )


def held_out_order(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of n items; the eval split is taken from its end so that it does not
    change when n_train does."""
    return np.random.default_rng([seed, 2]).permutation(n)
