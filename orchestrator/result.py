"""What a trial reports to the driver: the one contract between the worker (trainable.py) and the
one writer (recorder.py), as a typed object. Free of torch and Ray, so the driver reads results
without importing either.

On the wire (a Ray Tune result) it is a flat mapping: the trainer's metrics under their own
names, beside the keys below. A trainer reports only the metric names it declares
(trainers/reports.py); the worker refuses any other, so the trial fails with that error instead
of the name being dropped without a word.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import GapsweepError

STEP = "step"
NODE_ID = "node_id"
HOST = "host"
ENTERED_AT = "entered_at"  # worker clock: when the trial function started (GAPSWEEP_TRACE)
REPORTED_AT = "reported_at"  # worker clock: when this result was reported
RESUMED_FROM = "resumed_from"  # the checkpoint step this attempt resumed from; -1: from scratch
TERMINAL_ERROR = "terminal_error"  # the trial ended with an error not worth a retry
# A pack's result (orchestrator/packing.py) carries its members' reports of one step: member
# key -> that member's metrics, and, where it has one, the step it resumed from; and the members
# that failed alone since the last result: member key -> error.
PACK_MEMBERS = "pack_members"
PACK_RESUMED_FROM = "pack_resumed_from"
PACK_FAILED = "pack_failed"
CONTRACT_KEYS = frozenset(
    {STEP, NODE_ID, HOST, ENTERED_AT, REPORTED_AT, RESUMED_FROM, TERMINAL_ERROR}
    | {PACK_MEMBERS, PACK_RESUMED_FROM, PACK_FAILED}
)


class UndeclaredMetricError(GapsweepError):
    """A trainer reported a metric name it does not declare."""


@dataclass(frozen=True)
class Placement:
    """Where an attempt runs, fixed when the worker enters the trial."""

    node_id: str | None
    host: str | None
    entered_at: float | None = None


@dataclass(frozen=True)
class TrialResult:
    step: int
    metrics: dict[str, float]
    placement: Placement
    resumed_from: int | None = None
    reported_at: float | None = None
    terminal_error: str | None = None

    def to_tune(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.metrics, STEP: self.step, NODE_ID: self.placement.node_id}
        out |= {HOST: self.placement.host, ENTERED_AT: self.placement.entered_at}
        out[RESUMED_FROM] = -1 if self.resumed_from is None else self.resumed_from
        if self.reported_at is not None:
            out[REPORTED_AT] = self.reported_at
        if self.terminal_error is not None:
            out[TERMINAL_ERROR] = self.terminal_error
        return out

    @classmethod
    def from_tune(cls, result: Mapping[str, Any], declared: Collection[str]) -> TrialResult:
        """The result Tune handed the driver; of its other keys only the declared metrics
        are read (Tune adds its own: time_total_s, training_iteration, ...)."""
        resumed = result.get(RESUMED_FROM)
        error = result.get(TERMINAL_ERROR)
        return cls(
            step=int(result[STEP]),
            metrics={n: float(result[n]) for n in declared if _is_number(result.get(n))},
            placement=Placement(
                node_id=_str_or_none(result.get(NODE_ID)),
                host=_str_or_none(result.get(HOST)),
                entered_at=_float_or_none(result.get(ENTERED_AT)),
            ),
            resumed_from=resumed if isinstance(resumed, int) and resumed >= 0 else None,
            reported_at=_float_or_none(result.get(REPORTED_AT)),
            terminal_error=error if isinstance(error, str) else None,
        )


@dataclass(frozen=True)
class PackResult:
    """One step of a pack: each member's report as its own TrialResult, and who failed."""

    reports: dict[str, TrialResult]
    failed: dict[str, str]

    @classmethod
    def from_tune(cls, result: Mapping[str, Any], declared: Collection[str]) -> PackResult | None:
        """None for a result of a trial that runs alone."""
        members = result.get(PACK_MEMBERS)
        if not isinstance(members, Mapping):
            return None
        resumed = result.get(PACK_RESUMED_FROM) or {}
        reports = {
            str(key): TrialResult.from_tune(
                {**result, **metrics, RESUMED_FROM: resumed.get(key, -1)}, declared
            )
            for key, metrics in members.items()
            if isinstance(metrics, Mapping)
        }
        failed = {str(k): str(v) for k, v in (result.get(PACK_FAILED) or {}).items()}
        return cls(reports, failed)


def check_declared(trainer: str, metrics: Mapping[str, float], declared: Collection[str]) -> None:
    """Raise UndeclaredMetricError for names the trainer does not declare, or non-numbers."""
    unknown = sorted(n for n in metrics if n not in declared)
    if unknown:
        raise UndeclaredMetricError(
            f"trainer {trainer} reported metric(s) it does not declare: {', '.join(unknown)}; "
            "add them to its declaration in trainers/reports.py (docs/architecture.md)"
        )
    bad = sorted(n for n, v in metrics.items() if not _is_number(v))
    if bad:
        raise UndeclaredMetricError(f"trainer {trainer} reported non-numbers for {', '.join(bad)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float_or_none(value: Any) -> float | None:
    return float(value) if _is_number(value) and math.isfinite(value) else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
