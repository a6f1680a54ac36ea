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
    (None: the data has none, and only the nearest-centroid accuracy is reported).

    The loss is InfoNCE over eval batches of the training batch size, since its value depends
    on how many negatives each positive competes with. Everything is float32, also inside an
    autocast region (device.py).
    """
    with full_precision(emb.a.device):
        metrics = gap_metrics(emb.a, emb.b)
        metrics["loss"] = _batched_loss(emb, scale.detach().cpu().float(), batch_size)
        if split.labels is not None:
            metrics |= classification(emb, split.labels, split.groups, class_text)
        metrics |= retrieval(emb.a @ emb.b.T, split.match_ids, split.labels)
        return metrics


def classification(
    emb: Embeddings,
    labels: torch.Tensor,
    groups: torch.Tensor | None,
    class_text: ClassEmbeddings | None,
) -> dict[str, float]:
    """Two classifiers of tower a's embeddings, each under its own name (docs/metrics.md):
    `centroid_acc` takes the class of the nearest class mean of tower b's eval embeddings (it
    sees the eval labels: no prompts), `zero_shot_acc` that of the nearest class prompt,
    CLIP's zero-shot, where the data has prompts. The groups' accuracies follow the prompts
    where there are some, else the centroids."""
    hits = class_embeddings(emb.b, labels).predict(emb.a) == labels
    metrics = {"centroid_acc": float(hits.float().mean())}
    if class_text is not None:
        hits = class_text.predict(emb.a) == labels
        metrics["zero_shot_acc"] = float(hits.float().mean())
    if groups is not None:
        metrics |= group_accuracy(hits, groups)
    return metrics


def retrieval(
    sim: torch.Tensor, match_ids: torch.Tensor, labels: torch.Tensor | None
) -> dict[str, float]:
    """Recall@1 both ways from `sim` (row i tower a's item i, column j tower b's item j).

    `recall_at_1_*` is instance-level: a hit is the query's own pair or a copy of it (rows with
    equal `match_ids`: the same caption text, or another caption of the same image, as COCO's
    recall counts). `class_recall_at_1_*`, where the data has classes, counts any item of the
    query's class."""
    metrics = {
        "recall_at_1_a2b": recall_at_1(sim, match_ids),
        "recall_at_1_b2a": recall_at_1(sim.T, match_ids),
    }
    if labels is not None:
        metrics["class_recall_at_1_a2b"] = recall_at_1(sim, labels)
        metrics["class_recall_at_1_b2a"] = recall_at_1(sim.T, labels)
    return metrics


def recall_at_1(sim: torch.Tensor, ids: torch.Tensor) -> float:
    """The share of rows whose most similar column has the row's id (row i pairs column i)."""
    best = sim.argmax(dim=1)
    return float((ids[best] == ids).float().mean())


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
