"""Configuration of one trial of the `landscape` trainer (landscape.py): a loss-versus-gap curve
of the paper's Figure 3 simulations."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainers.config.base import FrozenModel


class LandscapeConfig(FrozenModel):
    """One loss-versus-gap curve."""

    layout: Literal["equator", "rings", "mirrored_ring"] = Field(
        "equator",
        description="equator: six points 20 degrees apart; rings: nine pairs on rings at ±height;"
        " mirrored_ring: nine images on a ring at +height, their texts mirrored at -height"
        " (Supp. Fig. 9)",
    )
    mismatched: bool = Field(
        True,
        description="equator and rings: swap the captions of two pairs; mirrored_ring: move one"
        " pair next to another (10 degrees apart), a hard negative for both",
    )
    temperature: float = Field(0.01, gt=0.0, le=100.0, description="tau in logits = cos / tau")
    max_shift: float = Field(3.0, gt=0.0, le=100.0, description="largest λ")
    shifts: int = Field(61, ge=2, le=10_001, description="λ values from 0 to max_shift")
    ring_height: float = Field(0.5, gt=0.0, lt=1.0, description="z of the rings (rings only)")
    seed: int = Field(0, ge=0, description="unused by the simulation; kept for seed sweeps")
