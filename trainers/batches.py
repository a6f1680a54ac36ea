"""The order in which a trial sees its training pairs: whole batches, each epoch's order drawn
from (seed, epoch) alone, so a run resumed at any step sees exactly the batches the
uninterrupted run would have.

A split whose rows share an a-side input (an image with several captions, as COCO's five) is
ordered by its items instead: each epoch every image comes once, with one of its captions
drawn, so no image meets itself as a negative in a batch and an epoch is one pass over images.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainers.config import TrialConfig


def units(n: int, items: torch.Tensor | None) -> int:
    """What an epoch passes over: the distinct items of n rows, or the rows themselves."""
    return n if items is None else int(torch.unique(items).numel())


def epoch_rows(n: int, items: torch.Tensor | None, seed: int, epoch: int) -> torch.Tensor:
    """The rows of one epoch in order: a permutation of the n rows, or of the items with one
    row of each drawn."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if items is None:
        return torch.randperm(n, generator=generator)
    _, unit = torch.unique(items, return_inverse=True)
    counts = torch.bincount(unit)
    grouped = torch.argsort(unit, stable=True)  # the rows of unit 0, then of unit 1, ...
    first = torch.cumsum(counts, 0) - counts
    order = torch.randperm(counts.numel(), generator=generator)
    drawn = (torch.rand(order.numel(), generator=generator) * counts[order]).long()
    return grouped[first[order] + drawn]


def batches(
    config: TrialConfig,
    n: int,
    first: int,
    steps: int,
    device: torch.device,
    items: torch.Tensor | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """(step, indices into the n training rows) for steps first..steps. The order lives on the
    device, so that indexing the inputs there needs no copy per step."""
    size = min(config.optim.batch_size, units(n, items))
    per_epoch = units(n, items) // size
    epoch, order = -1, torch.empty(0, dtype=torch.int64)
    for step in range(first, steps + 1):
        index = step - 1
        if index // per_epoch != epoch:
            epoch = index // per_epoch
            order = epoch_rows(n, items, config.seed, epoch).to(device)
        start = (index % per_epoch) * size
        yield step, order[start : start + size]
