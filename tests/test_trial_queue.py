"""QueuedFIFO (orchestrator/trial_queue.py) picks what Ray Tune's FIFOScheduler picks, from a
queue instead of a walk over every trial: real Tune trials moved through the statuses Tune
gives them, a retried one among them, compared pick by pick with FIFOScheduler itself. Every
sweep without a scheduler runs on it (tests/test_end_to_end.py, tests/test_faults.py)."""

from __future__ import annotations

import random

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from orchestrator.trial_queue import QueuedFIFO


class Trials:
    """What both schedulers are given of Tune's controller: its trials in the order added."""

    def __init__(self) -> None:
        self.trials: list[Trial] = []

    def get_trials(self) -> list[Trial]:
        return self.trials


def test_it_picks_what_fifo_picks_through_starts_ends_and_retries() -> None:
    rng = random.Random(7)
    controller, fifo, queued = Trials(), FIFOScheduler(), QueuedFIFO()
    for step in range(400):
        if step % 3 == 0 and len(controller.trials) < 120:  # the searcher adds one
            trial = Trial("fn", config={"trial_key": f"k{step}"}, stub=True)
            controller.trials.append(trial)
            queued.on_trial_add(controller, trial)  # type: ignore[arg-type]
        chosen = fifo.choose_trial_to_run(controller)  # type: ignore[arg-type]
        assert queued.choose_trial_to_run(controller) is chosen  # type: ignore[arg-type]
        assert queued.choose_trial_to_run(controller) is chosen  # type: ignore[arg-type]
        if chosen is not None and rng.random() < 0.7:
            chosen.set_status(Trial.RUNNING)
        running = [t for t in controller.trials if t.status == Trial.RUNNING]
        if running and rng.random() < 0.5:
            ending = rng.choice(running)
            if rng.random() < 0.2:  # retried: Tune tells the scheduler, then requeues it
                queued.on_trial_error(controller, ending)  # type: ignore[arg-type]
                ending.set_status(Trial.PENDING)
            else:
                ending.set_status(rng.choice([Trial.TERMINATED, Trial.ERROR]))
    finished = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in controller.trials)
    assert finished > 60  # the walk it spares grew this long
    assert len(queued.queue) < len(controller.trials) - finished + 10
