"""The loss landscape of real embeddings (the paper's Fig. 3b-d): the contrastive loss as the
gap is shifted by λ, one curve per temperature, with where each is lowest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainers.gap.shift import F64, ShiftPoint, shift_curve


@dataclass(frozen=True)
class LandscapeCurve:
    temperature: float
    points: tuple[ShiftPoint, ...]

    @property
    def lowest(self) -> ShiftPoint:
        """The point of lowest loss; of equal ones, the smallest shift."""
        return min(self.points, key=lambda p: (p.loss, abs(p.lam)))

    @property
    def at_edge(self) -> bool:
        """Whether the lowest point is an end of the λ range (the minimum may lie beyond)."""
        lams = [p.lam for p in self.points]
        return len(lams) > 1 and self.lowest.lam in (min(lams), max(lams))

    def to_dict(self) -> dict[str, Any]:
        best = self.lowest
        return {
            "temperature": self.temperature,
            "min_lambda": best.lam,
            "min_gap_norm": best.gap_norm,
            "min_loss": best.loss,
            "min_at_edge": self.at_edge,
            "curve": [
                {"lambda": p.lam, "gap_norm": p.gap_norm, "loss": p.loss} for p in self.points
            ],
        }


def loss_landscape(
    x: F64,
    y: F64,
    lambdas: tuple[float, ...],
    temperatures: tuple[float, ...],
    direction: F64 | None = None,
) -> tuple[LandscapeCurve, ...]:
    """One shift curve of unit rows `x`, `y` per temperature, along `direction` (default:
    their own gap direction)."""
    return tuple(
        LandscapeCurve(t, shift_curve(x, y, lambdas=lambdas, temperature=t, direction=direction))
        for t in temperatures
    )
