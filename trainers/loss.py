"""Symmetric InfoNCE (CLIP's loss) and the temperature as an explicit log-scale parameter."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Temperature(nn.Module):
    """Holds log(1/tau), as open_clip does, so a learned temperature stays positive.

    When learnable, 1/tau is held at most 1/min_temperature (CLIP's 100 for min 0.01) so the
    logits cannot blow up. CLIP clamps the parameter itself after each step (`after_step`): at
    the cap its gradient still flows, so tau can rise again. Clamping only in the forward pass
    (`clamp_in_place=False`, kept to reproduce older trials) lets the parameter run past the
    cap, where clamp's gradient is zero, and tau stays at the cap for good.
    """

    def __init__(
        self,
        temperature: float,
        learnable: bool,
        min_temperature: float,
        clamp_in_place: bool = True,
    ) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable
        )
        self.max_log_scale = math.log(1.0 / min_temperature) if learnable else math.inf
        self.clamp_in_place = learnable and clamp_in_place

    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def after_step(self) -> None:
        """Bring a learned temperature back to its cap once the optimiser moved it past."""
        if self.clamp_in_place:
            with torch.no_grad():
                self.log_scale.clamp_(max=self.max_log_scale)

    def value(self) -> float:
        return float(1.0 / self.scale().detach())


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean of the a->b and b->a cross-entropies over the in-batch similarity matrix.

    `a` and `b` are L2-normalised (N, d) embeddings with row i of each a matched pair;
    `scale` is 1/tau. Computed in float32 whatever autocast region it is called from: at
    tau = 1/100 the logits reach 100, where bf16 is only good to 0.5, and the loss, its
    gradients and a learned temperature's gradient would all carry that error.
    """
    with torch.autocast(a.device.type, enabled=False):
        a, b, scale = (_at_least_float32(x) for x in (a, b, scale))
        logits = scale * (a @ b.T)
        targets = torch.arange(a.shape[0], device=a.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16 and fp16 up to float32; float32 and float64 as they are."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
