"""A trial Tune gave up on with retries left is not failed.

Tune retries a trial whose worker dies while it trains, but ends a pending one at once when the
worker it reuses dies while being readied for it (the reset task fails first; Ray 2.60's
TuneController._process_trial_failure only recovers RUNNING trials). The chaos test's
worker-kill hit that window in CI: the trial was recorded failed without a single step, and a
sweep with retries to spare did not complete. The recorder (a real one, on a real SQLite store
and a real MLflow store, given real Tune `Trial`s in a local Ray) leaves such a trial
unfinished for run.py to run again, as often as Tune would have retried it, and fails it only
past that."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.exceptions import RayActorError
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from orchestrator.progress import SweepProgress
from orchestrator.recorder import Recorder
from orchestrator.store.lease import Holder
from orchestrator.store.repository import ResultsStore
from orchestrator.tracking.client import MlflowTracker
from orchestrator.tracking.mirror import MlflowMirror
from tests.test_store import add_sweep
from tests.test_store_outage import writer_for

MAX_FAILURES = 1


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # A short private folder: Ray's sockets live in it, and a pytest tmp path is too long.
    with tempfile.TemporaryDirectory(prefix="gs-ray-", dir="/tmp") as temp_dir:
        ray.init(num_cpus=1, include_dashboard=False, _temp_dir=temp_dir)
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture
def recorder(tmp_path: Path, local_ray: None) -> Iterator[tuple[Recorder, ResultsStore]]:
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        add_sweep(store, "s", n=2)
        fence = store.acquire_lease("s", Holder.this_process(), 120)
        tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiment = tracker.experiment_for("s")
        parent = tracker.start_sweep_run(experiment, "s", "name: s\n", None)
        mirror = MlflowMirror(tracker, store, "s", (experiment, parent), lambda message: None)
        progress = SweepProgress("s", None)
        for key in ("k0", "k1"):
            progress.add(key, key, {})
        writer = writer_for(store, tmp_path, fence.epoch, [])
        made = Recorder(writer, mirror, progress, ("gap_norm",))
        try:
            yield made, store
        finally:
            made.mlflow.close()  # its MLflow work done before the stores close


def failed_trial(tmp_path: Path, key: str, failures: int) -> Trial:
    """A Tune trial of `key` whose worker died `failures` times, as Tune leaves it."""
    storage = StorageContext(
        storage_path=str(tmp_path / "tune"), experiment_dir_name="s", trial_dir_name=key
    )
    trial = Trial(
        "run_unit", config={"trial_key": key}, max_failures=MAX_FAILURES, stub=True,
        storage=storage,
    )  # fmt: skip
    trial.init_local_path()
    for _ in range(failures):
        trial.handle_error(RayActorError(error_msg="The actor died unexpectedly"))
    return trial


def test_a_trial_ended_with_retries_left_runs_again_and_fails_only_past_them(
    recorder: tuple[Recorder, ResultsStore], tmp_path: Path
) -> None:
    rec, store = recorder
    lost = failed_trial(tmp_path, "k0", failures=MAX_FAILURES)  # Tune would retry it once more
    rec.on_trial_start(0, [], lost)
    rec.on_trial_error(0, [], lost)
    assert store.trial("s", "k0").status == "running"  # not failed: stop_unfinished settles it
    assert rec.progress.lines["k0"].status == "pending"
    assert rec.take_lost() == {"k0"} and rec.take_lost() == set()

    again = failed_trial(tmp_path / "again", "k0", failures=MAX_FAILURES)  # run.py's next pass
    rec.on_trial_start(0, [], again)
    rec.on_trial_error(0, [], again)
    assert rec.take_lost() == set()  # lost as often as Tune retries: now it failed
    ended = store.trial("s", "k0")
    assert ended.status == "failed" and "The actor died unexpectedly" in (ended.error or "")


def test_a_trial_past_its_retries_fails_at_once(
    recorder: tuple[Recorder, ResultsStore], tmp_path: Path
) -> None:
    rec, store = recorder
    spent = failed_trial(tmp_path, "k1", failures=MAX_FAILURES + 1)
    rec.on_trial_start(0, [], spent)
    rec.on_trial_error(0, [], spent)
    assert rec.take_lost() == set()
    assert store.trial("s", "k1").status == "failed"
