"""K dual encoders of one architecture as one model: each parameter stacked into a (K, ...)
tensor, the towers run once for the whole pack through `torch.func.vmap` over
`functional_call`, and each member's temperature a row of a (K,) log-scale.

The members' own `DualModel`s stay alongside, holding no state of their own between steps:
`write_member` copies a member's rows into its model before it is evaluated or checkpointed, so
evaluation and checkpoints are exactly the unpacked trainer's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from trainers.dual_encoder import DualModel
from trainers.loss import contrastive_loss


class StackedTower:
    """One tower of every member: stacked parameters and buffers on a weightless template."""

    def __init__(self, towers: Sequence[nn.Module]) -> None:
        # In training mode whatever the member was left in (its step-0 evaluation): a tower
        # with dropout or batch norm would otherwise train as it evaluates.
        self.template = copy.deepcopy(towers[0]).to("meta").train(True)
        # Contiguous whatever the members' layout (channels-last kernels): the optimiser's
        # kernel updates each member's row as one dense block.
        self.params = {
            name: torch.stack([dict(t.named_parameters())[name].detach() for t in towers])
            .contiguous()
            .requires_grad_(p.requires_grad)
            for name, p in towers[0].named_parameters()
        }
        self.buffers = {
            name: torch.stack([dict(t.named_buffers())[name] for t in towers]).contiguous()
            for name, _ in towers[0].named_buffers()
        }

    def __call__(self, inputs: torch.Tensor, shared: bool) -> torch.Tensor:
        """(K, B, d) outputs of (K, B, ...) inputs, or of one (B, ...) batch every member sees."""

        def one(
            params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
        ) -> torch.Tensor:
            out: torch.Tensor = functional_call(self.template, (params, buffers), (x,))
            return out

        in_dims = (0, 0, None if shared else 0)
        result: torch.Tensor = vmap(one, in_dims=in_dims)(self.params, self.buffers, inputs)
        return result

    def trainable(self) -> list[tuple[str, torch.Tensor]]:
        return [(name, p) for name, p in self.params.items() if p.requires_grad]

    def write_member(self, row: int, tower: nn.Module) -> None:
        with torch.no_grad():
            for name, p in tower.named_parameters():
                p.copy_(self.params[name][row])
            for name, b in tower.named_buffers():
                b.copy_(self.buffers[name][row])

    def keep(self, rows: torch.Tensor) -> None:
        """Only the members at `rows` go on."""
        self.params = {
            n: p.detach()[rows].clone().requires_grad_(p.requires_grad)
            for n, p in self.params.items()
        }
        self.buffers = {n: b[rows].clone() for n, b in self.buffers.items()}


class StackedTemperature:
    """Every member's log(1/tau), with CLIP's cap (loss.Temperature) where it learns tau.

    A member that does not learn tau has no cap (as Temperature gives it) and is left out of
    the optimiser's update by a zero rate, so its row never moves."""

    def __init__(self, models: Sequence[DualModel]) -> None:
        temps = [m.temperature for m in models]
        self.log_scale = torch.stack([t.log_scale.detach() for t in temps]).clone()
        self.log_scale.requires_grad_(True)
        device = self.log_scale.device
        self.cap = torch.tensor([t.max_log_scale for t in temps], device=device)
        self.learns = torch.tensor([t.log_scale.requires_grad for t in temps], device=device)
        self.clamps = torch.tensor([t.clamp_in_place for t in temps], device=device)

    def scale(self) -> torch.Tensor:
        # clamp, not minimum: at the cap minimum would halve the gradient between its two sides.
        return self.log_scale.clamp(max=self.cap).exp()

    def after_step(self) -> None:
        with torch.no_grad():
            capped = self.log_scale.clamp(max=self.cap)
            self.log_scale.copy_(torch.where(self.clamps, capped, self.log_scale))

    def write_member(self, row: int, model: DualModel) -> None:
        with torch.no_grad():
            model.temperature.log_scale.copy_(self.log_scale[row])

    def keep(self, rows: torch.Tensor) -> None:
        self.log_scale = self.log_scale.detach()[rows].clone().requires_grad_(True)
        self.cap, self.learns, self.clamps = self.cap[rows], self.learns[rows], self.clamps[rows]


class StackedDual:
    """Both towers and the temperature of K members."""

    def __init__(self, models: Sequence[DualModel]) -> None:
        self.image = StackedTower([m.image for m in models])
        self.text = StackedTower([m.text for m in models])
        self.temperature = StackedTemperature(models)

    def losses(self, batch_a: torch.Tensor, batch_b: torch.Tensor, shared: bool) -> torch.Tensor:
        """(K,) InfoNCE of each member on its own batch (or on the one shared batch)."""
        a, b = self.image(batch_a, shared), self.text(batch_b, shared)
        losses: torch.Tensor = vmap(contrastive_loss)(a, b, self.temperature.scale())
        return losses

    def write_member(self, row: int, model: DualModel) -> None:
        self.image.write_member(row, model.image)
        self.text.write_member(row, model.text)
        self.temperature.write_member(row, model)

    def keep(self, rows: torch.Tensor) -> None:
        self.image.keep(rows)
        self.text.keep(rows)
        self.temperature.keep(rows)
