"""Tune's first-in first-out scheduling without its cost per finished trial.

Ray Tune's `FIFOScheduler.choose_trial_to_run` walks every trial of the run, finished ones
first, each time Tune looks for one to start, several times a second: at 5,000 finished
landscape trials that walk was a third of the driver's time (benchmarks/README.md, "Many small
trials"), and the sweep slowed as it went. `QueuedFIFO` picks the same trial from a queue of
its own that finished trials leave for good.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController


class QueuedFIFO(FIFOScheduler):
    """The first pending trial in the order Tune added them, as FIFOScheduler picks it, from a
    heap of pending trials by the order they were added: a trial Tune requeues for a retry goes
    back to its place. Idempotent, as Tune asks: the head stays until its status moves on."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.added: dict[str, int] = {}  # trial id -> its place in the order added
        # A heap by that place; the push count breaks ties, as a trial may be in it twice.
        self.queue: list[tuple[int, int, Trial]] = []
        self.pushes = 0

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        self.added[trial.trial_id] = len(self.added)
        self._push(trial)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        # Tune calls this just before it sets a retried trial PENDING again (and for a trial
        # that ends in error, which the next pick drops).
        self._push(trial)

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        while self.queue and self.queue[0][2].status != Trial.PENDING:
            heapq.heappop(self.queue)
        return self.queue[0][2] if self.queue else None

    def _push(self, trial: Trial) -> None:
        self.pushes += 1
        heapq.heappush(self.queue, (self.added[trial.trial_id], self.pushes, trial))
