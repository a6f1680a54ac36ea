"""The pack's optimiser built by the unpacked trainer's rules (dual_encoder.make_optimiser),
member by member, and its state moved to and from each member's own torch.optim.Adam, so a
member's checkpoint is exactly what the unpacked trainer saves and loads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainers.config import TrialConfig
from trainers.dual_encoder import DualModel
from trainers.pack.adam import StackedAdam, StackedGroup
from trainers.pack.stacked import StackedDual

TOWERS = ("image", "text")
MOMENTS = ("exp_avg", "exp_avg_sq")


def member_rates(config: TrialConfig, part: str, ndim: int) -> tuple[float, float]:
    """(rate, L2 decay) of one member's parameter of `ndim` dimensions in `part` (image, text
    or temperature), as make_optimiser's groups give them."""
    rate = config.optim.lr
    tower_lr = getattr(getattr(config.model, part, None), "lr", None)
    if part == "temperature":
        rate = config.loss.temperature_lr or rate
    elif tower_lr is not None:
        rate = tower_lr
    # CLIP's rule with decay "weights": only matrices and kernels decay.
    no_decay = config.optim.decay == "weights" and ndim < 2
    return rate, 0.0 if no_decay else config.optim.weight_decay


def stacked_adam(pack: StackedDual, configs: Sequence[TrialConfig]) -> StackedAdam:
    """One group per stacked parameter, with each member's rate and decay; a member that does
    not learn its temperature gets rate and decay 0 there, so its row stays put."""
    groups = []
    for part in TOWERS:
        for _, p in getattr(pack, part).trainable():
            rates = [member_rates(c, part, p.ndim - 1) for c in configs]
            groups.append(StackedGroup([p], [r for r, _ in rates], [d for _, d in rates]))
    learns = [c.loss.learn_temperature for c in configs]
    rates = [member_rates(c, "temperature", 0) for c in configs]
    lr = [r if learn else 0.0 for (r, _), learn in zip(rates, learns, strict=True)]
    decay = [d if learn else 0.0 for (_, d), learn in zip(rates, learns, strict=True)]
    groups.append(StackedGroup([pack.temperature.log_scale], lr, decay))
    return StackedAdam(groups)  # torch.optim.Adam's default betas and eps, as make_optimiser


def stacked_parameters(pack: StackedDual) -> list[tuple[str, torch.Tensor]]:
    """Every trained stacked tensor by its member parameter's name in a DualModel."""
    named = [(f"{part}.{n}", p) for part in TOWERS for n, p in getattr(pack, part).trainable()]
    return [*named, ("temperature.log_scale", pack.temperature.log_scale)]


def member_parameters(model: DualModel) -> dict[str, torch.nn.Parameter]:
    parts = {"image": model.image, "text": model.text, "temperature": model.temperature}
    return {f"{part}.{n}": p for part, m in parts.items() for n, p in m.named_parameters()}


def write_member_state(
    adam: StackedAdam, pack: StackedDual, row: int, model: DualModel, own: torch.optim.Optimizer
) -> None:
    """Give member `row`'s own Adam (over `model`) the moments and step count it would have."""
    in_groups = {id(p) for g in own.param_groups for p in g["params"]}
    params = member_parameters(model)
    for name, stacked in stacked_parameters(pack):
        moments = adam.moments(stacked)
        param = params[name]
        if moments is None or id(param) not in in_groups:
            continue
        own.state[param] = {
            "step": torch.tensor(float(adam.steps)),
            "exp_avg": moments[0][row].detach().clone(),
            "exp_avg_sq": moments[1][row].detach().clone(),
        }


def read_member_states(
    adam: StackedAdam,
    pack: StackedDual,
    models: Sequence[DualModel],
    owns: Sequence[torch.optim.Optimizer],
) -> None:
    """The pack's moments from each member's own Adam, as restored from its checkpoint."""
    named = [member_parameters(m) for m in models]
    for name, stacked in stacked_parameters(pack):
        found = [own.state.get(ps[name]) for ps, own in zip(named, owns, strict=True)]
        if any(found):  # else nothing has stepped it yet: Adam starts it from zero
            adam.set_moments(stacked, *(_rows(found, m, stacked) for m in MOMENTS))


def _rows(found: list[Any], moment: str, stacked: torch.Tensor) -> torch.Tensor:
    """One moment of every member, stacked. A member without state there (its temperature is
    not learned, so its own Adam never held it) gets zeros, as the pack gave it."""
    zeros = torch.zeros_like(stacked[0])
    rows = [state[moment].to(stacked.device) if state else zeros for state in found]
    return torch.stack(rows).contiguous()
