"""The MLflow mirror on a real SQLite MLflow store and a real SQLite results store.

A driver killed between logging a batch to MLflow and recording that in the store leaves MLflow
ahead of the store's watermark; neither a resumed trial nor `orchestrator sync` may log those
steps twice. While MLflow is healthy, the mirror logs what the recorder hands it and reads
nothing back from the store. A driver killed between MLflow's `create_run` and saving the run id
leaves a run the next driver adopts (found by its tags) instead of making a second; a driver
killed between recording a trial's end and closing its run leaves it RUNNING, and the next one
closes it with the trial's status."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlalchemy import event

from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial
from orchestrator.tracking.client import MlflowTracker
from orchestrator.tracking.mirror import MlflowMirror

SWEEP, KEY = "mirrored", "k0"


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ResultsStore, MlflowTracker]:
    store = ResultsStore(f"sqlite:///{tmp_path / 'results.db'}")
    store.upsert_sweep(SWEEP, "dual_encoder", "name: mirrored\n", "hash", ("loss", "min"))
    store.register_trials(SWEEP, [NewTrial(KEY, "seed=0", 0, {"seed": 0}, {"seed": 0})])
    store.mark_running(SWEEP, KEY, None, None)
    for step in (0, 8, 16, 24, 32):
        store.record_metrics(SWEEP, KEY, step, {"loss": 1.0 / (step + 1), "gap_norm": 0.5})
    return store, MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")


def a_mirror(store: ResultsStore, tracker: MlflowTracker) -> MlflowMirror:
    """A mirror as a (new) driver makes one."""
    experiment = tracker.experiment_for(SWEEP)
    parent = tracker.start_sweep_run(experiment, SWEEP, "name: mirrored\n", None)
    return MlflowMirror(tracker, store, SWEEP, (experiment, parent), lambda message: None)


def killed_after_logging(store: ResultsStore, tracker: MlflowTracker) -> str:
    """All five steps reach MLflow, but the store's watermark stays at step 16."""
    a_mirror(store, tracker).catch_up(KEY)
    run_id = store.trial(SWEEP, KEY).mlflow_run_id
    assert run_id is not None
    store.set_mlflow_step(SWEEP, KEY, 16)
    return run_id


def logged_steps(tracker: MlflowTracker, run_id: str) -> Counter[int]:
    return Counter(m.step for m in tracker.client.get_metric_history(run_id, "loss"))


def test_a_resumed_trial_takes_mlflows_own_last_step(
    stores: tuple[ResultsStore, MlflowTracker],
) -> None:
    store, tracker = stores
    run_id = killed_after_logging(store, tracker)
    store.record_metrics(SWEEP, KEY, 40, {"loss": 0.1, "gap_norm": 0.4})  # the resumed trial
    mirror = a_mirror(store, tracker)
    mirror.open_trial(KEY)
    mirror.push_many(KEY, [(40, {"loss": 0.1, "gap_norm": 0.4})])
    assert logged_steps(tracker, run_id) == Counter({0: 1, 8: 1, 16: 1, 24: 1, 32: 1, 40: 1})
    assert store.trial(SWEEP, KEY).mlflow_last_step == 40


def test_sync_takes_mlflows_own_last_step(stores: tuple[ResultsStore, MlflowTracker]) -> None:
    store, tracker = stores
    run_id = killed_after_logging(store, tracker)
    assert a_mirror(store, tracker).sync_all() == 0
    assert logged_steps(tracker, run_id) == Counter({0: 1, 8: 1, 16: 1, 24: 1, 32: 1})
    assert store.trial(SWEEP, KEY).mlflow_last_step == 32


def test_a_healthy_mirror_logs_what_it_is_handed_without_reading_the_store(
    stores: tuple[ResultsStore, MlflowTracker],
) -> None:
    store, tracker = stores
    store.register_trials(SWEEP, [NewTrial("k1", "seed=1", 1, {"seed": 1}, {"seed": 1})])
    mirror = a_mirror(store, tracker)
    mirror.open_trial("k1")  # a new run: nothing to catch up
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for step in (0, 8, 16):
        metrics = {"loss": 1.0 / (step + 1), "gap_norm": 0.5}
        store.record_metrics(SWEEP, "k1", step, metrics, first_of_attempt=step == 0)
        mirror.push_many("k1", [(step, metrics)])
    reads = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    assert reads == []
    run_id = store.trial(SWEEP, "k1").mlflow_run_id
    assert run_id is not None
    assert logged_steps(tracker, run_id) == Counter({0: 1, 8: 1, 16: 1})
    assert store.trial(SWEEP, "k1").mlflow_last_step == 16


def child_runs(tracker: MlflowTracker) -> list[str]:
    experiment = tracker.experiment_for(SWEEP)
    runs = tracker.client.search_runs([experiment])
    return [r.info.run_id for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_a_run_whose_id_never_reached_the_store_is_adopted(
    stores: tuple[ResultsStore, MlflowTracker],
) -> None:
    store, tracker = stores
    experiment = tracker.experiment_for(SWEEP)
    parent = tracker.start_sweep_run(experiment, SWEEP, "name: mirrored\n", None)
    # What the killed driver did: the run made with its tags, its params not yet logged, and
    # its id never saved in the store.
    orphan = tracker.start_trial_run(experiment, parent, SWEEP, (KEY, "seed=0"), {}, None)
    assert store.trial(SWEEP, KEY).mlflow_run_id is None
    assert a_mirror(store, tracker).sync_all() == 0
    assert child_runs(tracker) == [orphan]
    assert store.trial(SWEEP, KEY).mlflow_run_id == orphan
    assert tracker.client.get_run(orphan).data.params == {"seed": "0"}
    assert logged_steps(tracker, orphan) == Counter({0: 1, 8: 1, 16: 1, 24: 1, 32: 1})


def test_the_sweeps_parent_run_is_found_by_its_tags(
    stores: tuple[ResultsStore, MlflowTracker],
) -> None:
    _, tracker = stores
    experiment = tracker.experiment_for(SWEEP)
    first = tracker.start_sweep_run(experiment, SWEEP, "name: mirrored\n", None)
    # The id never reached the store: the next driver passes none, and finds the same run.
    assert tracker.start_sweep_run(experiment, SWEEP, "name: mirrored\n", None) == first
    assert len(tracker.client.search_runs([experiment])) == 1


def test_a_run_left_running_for_an_ended_trial_is_closed_with_its_status(
    stores: tuple[ResultsStore, MlflowTracker],
) -> None:
    store, tracker = stores
    store.register_trials(SWEEP, [NewTrial("k1", "seed=1", 1, {"seed": 1}, {"seed": 1})])
    store.mark_running(SWEEP, "k1", None, None)
    store.record_metrics(SWEEP, "k1", 0, {"loss": 1.0, "gap_norm": 0.5}, first_of_attempt=True)
    first = a_mirror(store, tracker)
    first.catch_up(KEY)
    first.catch_up("k1")
    # The driver recorded the trial's end, then died before closing its run.
    store.record_metrics(SWEEP, KEY, 40, {"loss": 0.1, "gap_norm": 0.4})
    store.finish_trial(SWEEP, KEY, "completed", {"loss": 0.1, "gap_norm": 0.4})
    run_id, still_running = (store.trial(SWEEP, k).mlflow_run_id for k in (KEY, "k1"))
    assert run_id is not None and still_running is not None
    assert tracker.client.get_run(run_id).info.status == "RUNNING"
    a_mirror(store, tracker).close_left_running()
    assert tracker.client.get_run(run_id).info.status == "FINISHED"
    assert logged_steps(tracker, run_id) == Counter({0: 1, 8: 1, 16: 1, 24: 1, 32: 1, 40: 1})
    assert tracker.client.get_run(still_running).info.status == "RUNNING"  # not ended in SQL


class AnswerLost(MlflowTracker):
    """MLflow that commits a batch and then fails to answer, once: a server killed between
    writing the rows and replying (the chaos test's MLflow restart). The rows are real."""

    lose_next = False

    def log_metric_rows(
        self,
        run_id: str,
        rows: list[tuple[int, str, float]],
        tags: Mapping[str, str] | None = None,
    ) -> None:
        super().log_metric_rows(run_id, rows, tags)
        if self.lose_next:
            self.lose_next = False
            raise ConnectionError("the server went away before it answered")


def test_a_batch_whose_answer_was_lost_is_not_logged_twice(
    stores: tuple[ResultsStore, MlflowTracker], tmp_path: Path
) -> None:
    store, _ = stores
    tracker = AnswerLost(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mirror = a_mirror(store, tracker)
    mirror.open_trial(KEY)
    mirror.catch_up(KEY)  # steps 0-32 logged, the watermark at 32
    store.record_metrics(SWEEP, KEY, 40, {"loss": 0.1, "gap_norm": 0.4})
    tracker.lose_next = True
    mirror.push_many(
        KEY, [(40, {"loss": 0.1, "gap_norm": 0.4})]
    )  # in MLflow, but the mirror cannot know
    mirror.down_since = None  # MLflow answers again
    store.record_metrics(SWEEP, KEY, 48, {"loss": 0.05, "gap_norm": 0.3})
    mirror.push_many(KEY, [(48, {"loss": 0.05, "gap_norm": 0.3})])
    run_id = store.trial(SWEEP, KEY).mlflow_run_id
    assert run_id is not None
    expected = Counter({step: 1 for step in (0, 8, 16, 24, 32, 40, 48)})
    assert logged_steps(tracker, run_id) == expected
    assert store.trial(SWEEP, KEY).mlflow_last_step == 48
