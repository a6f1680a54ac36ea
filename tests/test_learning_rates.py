"""The learning-rate controls temperature.yaml's pretrain stage needs to start a learned
temperature at CLIP's 0.07: a rate of the temperature's own (`loss.temperature_lr`) and a linear
warm-up (`optim.warmup_steps`)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainers.config import TrialConfig
from trainers.dual_encoder import DualModel, make_optimiser, train_dual_encoder, warm_up
from trainers.loss import Temperature


def learned(tiny_base: dict[str, Any], **loss: Any) -> TrialConfig:
    tiny_base["loss"] = {"temperature": 0.07, "learn_temperature": True, **loss}
    return TrialConfig.model_validate(tiny_base)


def temperatures(config: TrialConfig) -> list[float]:
    reports: list[float] = []
    train_dual_encoder(config, lambda step, m: reports.append(m["temperature"]))
    return reports


def optimiser_for(config: TrialConfig) -> torch.optim.Optimizer:
    loss = config.loss
    temperature = Temperature(loss.temperature, loss.learn_temperature, loss.min_temperature)
    return make_optimiser(DualModel(nn.Linear(2, 2), nn.Linear(2, 2), temperature), config)


def test_the_temperature_learns_at_its_own_rate(tiny_base: dict[str, Any]) -> None:
    tiny_base["optim"]["lr"] = 1e-4
    shared = temperatures(learned(tiny_base))
    own = temperatures(learned(tiny_base, temperature_lr=0.05))
    # Adam moves log(1/tau) by about its rate a step: 1e-4 leaves tau at 0.07 within 0.1%
    # over 4 steps, 0.05 moves it by far more than that.
    assert shared[-1] == pytest.approx(0.07, rel=1e-3)
    assert abs(own[-1] - 0.07) > 0.005


def test_warm_up_ramps_every_group_linearly(tiny_base: dict[str, Any]) -> None:
    tiny_base["optim"].update(lr=1e-3, warmup_steps=4)
    config = learned(tiny_base, temperature_lr=0.1)
    optimiser = optimiser_for(config)
    seen: list[float] = []
    for step in (1, 2, 4, 9):
        warm_up(optimiser, config, step)
        seen.extend(group["lr"] for group in optimiser.param_groups)
    towers_then_temperature = [2.5e-4, 0.025, 5e-4, 0.05, 1e-3, 0.1, 1e-3, 0.1]
    assert seen == pytest.approx(towers_then_temperature, rel=1e-9)


def test_without_warm_up_or_own_rate_there_is_one_group_at_optim_lr(
    tiny_base: dict[str, Any],
) -> None:
    config = learned(tiny_base)
    optimiser = optimiser_for(config)
    warm_up(optimiser, config, 1)
    assert [group["lr"] for group in optimiser.param_groups] == [config.optim.lr]


def test_warm_up_slows_the_first_steps(tiny_base: dict[str, Any]) -> None:
    tiny_base["optim"]["lr"] = 0.05
    plain = temperatures(learned(tiny_base))
    tiny_base["optim"]["warmup_steps"] = 100
    warmed = temperatures(learned(tiny_base))
    assert abs(warmed[-1] - 0.07) < abs(plain[-1] - 0.07) / 5


def test_an_own_rate_for_a_fixed_temperature_is_refused(tiny_base: dict[str, Any]) -> None:
    tiny_base["loss"] = {"temperature": 0.07, "temperature_lr": 0.1}
    with pytest.raises(ValidationError, match="temperature_lr is set but learn_temperature"):
        TrialConfig.model_validate(tiny_base)


def test_unset_controls_stay_out_of_the_resolved_config(tiny_base: dict[str, Any]) -> None:
    dumped = learned(tiny_base).model_dump()
    assert "temperature_lr" not in dumped["loss"] and "warmup_steps" not in dumped["optim"]
    tiny_base["optim"]["warmup_steps"] = 3
    dumped = learned(tiny_base, temperature_lr=0.1).model_dump()
    assert dumped["loss"]["temperature_lr"] == 0.1 and dumped["optim"]["warmup_steps"] == 3
