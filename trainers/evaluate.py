"""Evaluation of a dual encoder on a held-out split: loss, gap geometry and downstream quality."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainers.data import PairedSplit
from trainers.gap import gap_metrics
from trainers.loss import contrastive_loss


@dataclass(frozen=True)
class Embeddings:
    a: torch.Tensor  # first tower (images), L2-normalised, float32 on the CPU
    b: torch.Tensor  # second tower (captions)


@torch.inference_mode()
def embed_split(
    image_tower: nn.Module,
    text_tower: nn.Module,
    split: PairedSplit,
    batch_size: int,
    device: torch.device,
) -> Embeddings:
    a_parts, b_parts = [], []
    for start in range(0, len(split), batch_size):
        sl = slice(start, start + batch_size)
        a_parts.append(image_tower(split.images[sl].to(device)).float().cpu())
        b_parts.append(text_tower(split.tokens[sl].to(device)).float().cpu())
    return Embeddings(torch.cat(a_parts), torch.cat(b_parts))


@torch.inference_mode()
def evaluate(
    emb: Embeddings,
    split: PairedSplit,
    class_text: torch.Tensor,
    scale: torch.Tensor,
    batch_size: int,
) -> dict[str, float]:
    """All eval metrics from precomputed embeddings; `class_text` are the class prompts' embeddings.

    The loss is InfoNCE over eval batches of the training batch size, since its value depends
    on how many negatives each positive competes with.
    """
    metrics = gap_metrics(emb.a, emb.b)
    metrics["loss"] = _batched_loss(emb, scale.detach().cpu().float(), batch_size)
    zero_shot = (emb.a @ class_text.T).argmax(dim=1)
    metrics["zero_shot_acc"] = float((zero_shot == split.shape_ids).float().mean())
    sim = emb.a @ emb.b.T
    metrics["recall_at_1_a2b"] = _recall_at_1(sim, split.caption_ids)
    metrics["recall_at_1_b2a"] = _recall_at_1(sim.T, split.caption_ids)
    return metrics


def _batched_loss(emb: Embeddings, scale: torch.Tensor, batch_size: int) -> float:
    total, count = 0.0, 0
    for start in range(0, emb.a.shape[0], batch_size):
        a, b = emb.a[start : start + batch_size], emb.b[start : start + batch_size]
        if a.shape[0] < 2:
            continue
        total += float(contrastive_loss(a, b, scale)) * a.shape[0]
        count += a.shape[0]
    return total / max(count, 1)


def _recall_at_1(sim: torch.Tensor, caption_ids: torch.Tensor) -> float:
    # Many pairs share a caption ("a small red circle"); retrieving any of them is a hit.
    best = sim.argmax(dim=1)
    return float((caption_ids[best] == caption_ids).float().mean())
