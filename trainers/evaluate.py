"""Evaluation of a dual encoder on a held-out split: loss, gap geometry and downstream quality."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainers.data.paired import PairedSplit
from trainers.device import full_precision
from trainers.gap import gap_metrics
from trainers.loss import contrastive_loss


@dataclass(frozen=True)
class ClassEmbeddings:
    """Zero-shot targets on tower b's side: one unit row per class variant, and its class."""

    vectors: torch.Tensor  # (variants, d)
    classes: torch.Tensor  # (variants,) int64

    def predict(self, a: torch.Tensor) -> torch.Tensor:
        """The class of each row of `a`: that of its most similar variant."""
        return self.classes[(a @ self.vectors.T).argmax(dim=1)]


@dataclass(frozen=True)
class Embeddings:
    a: torch.Tensor  # first tower (images), L2-normalised, float32 on the CPU
    b: torch.Tensor  # second tower (captions)


@torch.inference_mode()
def embed(tower: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The tower's embeddings of inputs already on its device, in batches, as CPU float32.

    The batches' outputs stay on the device until all are done: one copy back at the end
    instead of a wait for the device after every batch.
    """
    parts = [
        tower(inputs[start : start + batch_size]).float()
        for start in range(0, inputs.shape[0], batch_size)
    ]
    return torch.cat(parts).cpu()


@torch.inference_mode()
def embed_tokens(tower: nn.Module, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`embed` for token ids, running the tower once per distinct row.

    Captions repeat (the shapes data has 96 distinct ones, so 512 eval pairs hold at most 96):
    each row's embedding depends on that row alone, so the repeats are copies, not work.
    """
    distinct, index = torch.unique(tokens, dim=0, return_inverse=True)
    if distinct.shape[0] == tokens.shape[0]:
        return embed(tower, tokens, batch_size)
    return embed(tower, distinct, batch_size)[index.cpu()]


@torch.inference_mode()
def evaluate(
    emb: Embeddings,
    split: PairedSplit,
    class_text: ClassEmbeddings | None,
    scale: torch.Tensor,
    batch_size: int,
) -> dict[str, float]:
    """All eval metrics from precomputed embeddings; `class_text` are the class prompts'
    (None: where the split has labels, each class's mean tower-b embedding stands in).

    The loss is InfoNCE over eval batches of the training batch size, since its value depends
    on how many negatives each positive competes with. Everything is float32, also inside an
    autocast region (device.py).
    """
    with full_precision(emb.a.device):
        metrics = gap_metrics(emb.a, emb.b)
        metrics["loss"] = _batched_loss(emb, scale.detach().cpu().float(), batch_size)
        if split.labels is not None:
            targets = class_text
            if targets is None:  # no prompts: each class's mean caption stands in
                targets = class_embeddings(emb.b, split.labels)
            hits = targets.predict(emb.a) == split.labels
            metrics["zero_shot_acc"] = float(hits.float().mean())
            if split.groups is not None:
                metrics |= group_accuracy(hits, split.groups)
        sim = emb.a @ emb.b.T
        metrics["recall_at_1_a2b"] = _recall_at_1(sim, split.match_ids)
        metrics["recall_at_1_b2a"] = _recall_at_1(sim.T, split.match_ids)
        return metrics


def class_embeddings(
    prompts: torch.Tensor, owners: torch.Tensor | None, variants: torch.Tensor | None = None
) -> ClassEmbeddings:
    """The prompts of each variant averaged and renormalised (CLIP's prompt ensemble), with
    the class that `owners` gives each prompt; with no `variants`, a class is one variant; with
    no `owners`, row k is already class k."""
    if owners is None:
        return ClassEmbeddings(prompts, torch.arange(prompts.shape[0]))
    variants = owners if variants is None else variants
    classes = torch.zeros(int(variants.max()) + 1, dtype=torch.int64)
    return ClassEmbeddings(class_means(prompts, variants), classes.index_copy_(0, variants, owners))


def class_means(b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(classes, d) normalised mean embedding of each class: prototypes where no prompts exist."""
    count = int(labels.max()) + 1
    sums = torch.zeros(count, b.shape[1]).index_add_(0, labels, b)
    return torch.nn.functional.normalize(sums, dim=1)


def group_accuracy(hits: torch.Tensor, groups: torch.Tensor) -> dict[str, float]:
    """Worst group's accuracy and the spread between groups (the fairness view of Table 2)."""
    accs = [float(hits[groups == g].float().mean()) for g in torch.unique(groups).tolist()]
    return {"worst_group_acc": min(accs), "group_acc_spread": float(np.ptp(accs))}


def _batched_loss(emb: Embeddings, scale: torch.Tensor, batch_size: int) -> float:
    total, count = 0.0, 0
    for start in range(0, emb.a.shape[0], batch_size):
        a, b = emb.a[start : start + batch_size], emb.b[start : start + batch_size]
        if a.shape[0] < 2:
            continue
        total += float(contrastive_loss(a, b, scale)) * a.shape[0]
        count += a.shape[0]
    return total / max(count, 1)


def _recall_at_1(sim: torch.Tensor, match_ids: torch.Tensor) -> float:
    # Many pairs share a caption ("a small red circle"); retrieving any of them is a hit.
    best = sim.argmax(dim=1)
    return float((match_ids[best] == match_ids).float().mean())
