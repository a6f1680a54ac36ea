"""The spec's `scheduler` as a Ray Tune trial scheduler: trials whose metric lags are stopped
early, by trainer steps, and stored as `pruned` (orchestrator/recorder.py).

The scheduler judges the sweep's first objective at each report. Its horizon is left open
(ASHA's `max_t` far past any trial's steps): a trial that trains to its end must end as
completed, never be stopped by the scheduler at its last report and look pruned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.result import STEP

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

    from orchestrator.spec import SweepSpec

OPEN_HORIZON = 2**40  # steps: past any trial's end


def tune_scheduler(spec: SweepSpec, total_steps: int | None) -> TrialScheduler:
    """Tune's scheduler for the spec (first in, first out without one). `total_steps`: the
    longest trial's, which Hyperband needs to size its brackets."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule

    from orchestrator.trial_queue import QueuedFIFO

    chosen = spec.scheduler
    if chosen is None:
        return QueuedFIFO()
    metric, mode = spec.primary.name, spec.primary.mode
    if chosen.kind == "median":
        return MedianStoppingRule(
            time_attr=STEP, metric=metric, mode=mode, grace_period=chosen.grace_steps
        )
    if chosen.kind == "hyperband":
        horizon = max(total_steps or 0, chosen.grace_steps) + 1
        return HyperBandScheduler(
            time_attr=STEP,
            metric=metric,
            mode=mode,
            max_t=horizon,
            reduction_factor=chosen.reduction_factor,
            stop_last_trials=False,
        )
    return ASHAScheduler(
        time_attr=STEP,
        metric=metric,
        mode=mode,
        max_t=OPEN_HORIZON,
        grace_period=chosen.grace_steps,
        reduction_factor=chosen.reduction_factor,
        brackets=chosen.brackets,
        stop_last_trials=False,
    )
