"""A learned temperature clamped in place after each step, so it can rise again from its cap
(CLIP's rule), and weight decay on weights only: not on the temperature, norms or biases. Each
checked against the update worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from trainers.config import TrialConfig
from trainers.dual_encoder import DualModel, make_optimiser, train_step, warm_up
from trainers.loss import Temperature

CAP = math.log(100.0)  # log(1/tau) at min_temperature 0.01


def push(temperature: Temperature, direction: float, lr: float, steps: int) -> None:
    """Plain SGD on `direction * 1/tau`: -1 drives 1/tau up (tau down), +1 down (tau up)."""
    optimiser = torch.optim.SGD([temperature.log_scale], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (direction * temperature.scale()).backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        temperature.after_step()


def test_a_learned_temperature_at_its_cap_rises_again() -> None:
    t = Temperature(0.02, learnable=True, min_temperature=0.01)
    push(t, -1.0, lr=0.01, steps=5)
    assert t.log_scale.item() == pytest.approx(CAP, abs=1e-6)  # held at the cap, not past it
    assert t.value() == pytest.approx(0.01, rel=1e-6)
    push(t, +1.0, lr=1e-3, steps=1)
    # SGD from the cap: log(1/tau) - lr * d(1/tau)/dlog(1/tau) = log(100) - 1e-3 * 100
    assert t.value() == pytest.approx(0.01 * math.exp(0.1), rel=1e-5)


def test_the_forward_only_clamp_keeps_tau_at_the_cap_for_good() -> None:
    t = Temperature(0.02, learnable=True, min_temperature=0.01, clamp_in_place=False)
    push(t, -1.0, lr=0.01, steps=5)
    assert t.log_scale.item() > CAP + 0.5  # the parameter ran past the cap
    push(t, +1.0, lr=1e-3, steps=50)
    assert t.value() == pytest.approx(0.01, rel=1e-6)  # no gradient above the cap: stuck


def model_of(config: TrialConfig) -> DualModel:
    loss = config.loss
    temperature = Temperature(
        loss.temperature,
        loss.learn_temperature,
        loss.min_temperature,
        clamp_in_place=loss.temperature_clamp != "in_forward",
    )
    torch.manual_seed(0)
    return DualModel(nn.Linear(4, 4), nn.Linear(4, 4), temperature)


def named_parameters(model: DualModel) -> dict[str, nn.Parameter]:
    parts = {"image": model.image, "text": model.text, "temperature": model.temperature}
    return {f"{part}.{n}": p for part, m in parts.items() for n, p in m.named_parameters()}


def config_with(tiny_base: dict[str, Any], **sections: dict[str, Any]) -> TrialConfig:
    for name, values in sections.items():
        tiny_base[name] = {**tiny_base.get(name, {}), **values}
    return TrialConfig.model_validate(tiny_base)


@pytest.mark.parametrize(("clamp", "held_at_cap"), [("in_place", True), ("in_forward", False)])
def test_train_step_applies_the_clamp_rule(
    tiny_base: dict[str, Any], clamp: str, held_at_cap: bool
) -> None:
    config = config_with(
        tiny_base,
        loss={
            "temperature": 0.02,
            "learn_temperature": True,
            "temperature_lr": 1.0,
            "temperature_clamp": clamp,
        },
    )
    model = model_of(config)
    model.image, model.text = nn.Identity(), nn.Identity()
    optimiser = make_optimiser(model, config)
    # Matched pairs of close unit vectors: a larger 1/tau always separates them better.
    x = nn.functional.normalize(torch.ones(4, 4) + 0.1 * torch.eye(4), dim=1)
    for _ in range(20):
        train_step(model, optimiser, x, x)
    raw = model.temperature.log_scale.item()
    assert (raw == pytest.approx(CAP, abs=1e-6)) is held_at_cap, raw
    assert model.temperature.value() == pytest.approx(0.01, rel=1e-5)


def test_rules_are_recorded_in_the_config_only_where_they_change_something(
    tiny_base: dict[str, Any],
) -> None:
    plain = TrialConfig.model_validate(tiny_base).model_dump()
    assert "temperature_clamp" not in plain["loss"] and "decay" not in plain["optim"]
    decayed = config_with(tiny_base, optim={"weight_decay": 0.1}).model_dump()
    assert decayed["optim"]["decay"] == "weights"
    learned = config_with(tiny_base, loss={"learn_temperature": True}).model_dump()
    assert learned["loss"]["temperature_clamp"] == "in_place"
    with pytest.raises(ValueError, match="temperature_clamp is set but learn_temperature"):
        config_with(tiny_base, loss={"learn_temperature": False, "temperature_clamp": "in_place"})


@pytest.mark.parametrize("decay", ["weights", "all"])
def test_weight_decay_spares_the_temperature_biases_and_norms(
    tiny_base: dict[str, Any], decay: str
) -> None:
    config = config_with(
        tiny_base,
        optim={"weight_decay": 0.5, "lr": 0.01, "decay": decay},
        loss={"learn_temperature": True},
    )
    model = model_of(config)
    model.image = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    optimiser = make_optimiser(model, config)
    before = {name: p.detach().clone() for name, p in named_parameters(model).items()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only the decay term moves anything
    optimiser.step()
    for name, p in named_parameters(model).items():
        old = before[name]
        if decay == "all" or p.ndim >= 2:
            # Adam's first step moves each entry by lr * sign(its gradient), here wd * value
            expected = old - 0.01 * torch.sign(old)
            assert torch.allclose(p, expected, atol=1e-6), name
        else:
            assert torch.equal(p, old), f"{name} decayed under rule {decay}"


def test_warm_up_covers_both_groups_of_each_rate(tiny_base: dict[str, Any]) -> None:
    config = config_with(
        tiny_base,
        optim={"weight_decay": 0.1, "lr": 1e-3, "warmup_steps": 4},
        loss={"learn_temperature": True, "temperature_lr": 0.1},
    )
    optimiser = make_optimiser(model_of(config), config)
    warm_up(optimiser, config, 2)
    assert [g["lr"] for g in optimiser.param_groups] == pytest.approx([5e-4, 5e-4, 0.05, 0.05])
    assert [g["weight_decay"] for g in optimiser.param_groups] == [0.1, 0.0, 0.1, 0.0]
