"""The recorder's batches (orchestrator/report_batch.py): a batch of writes lands in the results
store as the same writes one by one would, in one transaction that is applied whole or not at
all and fenced by the sweep's lease (SQLite file and the real PostgreSQL server); and a real
sweep (`orchestrator submit`, local Ray, MLflow in a SQLite file) that gathers every report
until its trial ends still records each step once in SQL and in MLflow."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import InputError, LeaseLostError
from orchestrator.store.lease import Holder
from orchestrator.store.pending import Write
from orchestrator.store.repository import ResultsStore
from tests.helpers import mlflow_runs, orchestrator, stored, write_spec
from tests.test_store import add_sweep


@pytest.fixture
def store(results_db: str) -> Iterator[ResultsStore]:
    """A store in a SQLite file, and one in a new database of the real PostgreSQL server."""
    with ResultsStore(results_db) as opened:
        yield opened


# Two attempts of one trial, the second resumed from a checkpoint at step 1: what the recorder
# writes, in order, for a trial that failed once.
WRITES = [
    Write("mark_running", {"key": "k0", "host": None, "node_id": None}),
    Write("set_placement", {"key": "k0", "host": "h", "node_id": "n", "resumed_from_step": None}),
    *(
        Write("record_metrics", {"key": "k0", "step": s, "metrics": {"loss": 4.0 - s}})
        for s in range(4)
    ),
    Write("set_checkpoint", {"key": "k0", "path": "/ckpt/1"}),
    Write("finish_trial", {"key": "k0", "status": "failed", "metrics": None, "error": "boom"}),
    Write("mark_running", {"key": "k0", "host": None, "node_id": None}),
    Write("set_placement", {"key": "k0", "host": "h2", "node_id": "n2", "resumed_from_step": 1}),
    Write(
        "record_metrics",
        {"key": "k0", "step": 2, "metrics": {"loss": 9.0}, "first_of_attempt": True},
    ),
    Write("record_metrics", {"key": "k1", "step": 0, "metrics": {"loss": 1.0, "x": float("nan")}}),
    Write("finish_trial", {"key": "k0", "status": "completed", "metrics": {"loss": 9.0}}),
]


def together(store: ResultsStore, writes: list[Write], sweep: str = "s") -> None:
    store.apply_together(sweep, [functools.partial(w.apply, store, sweep) for w in writes])


def contents(store: ResultsStore, sweep: str = "s") -> list[tuple[object, ...]]:
    trials = store.trials(sweep)
    series = [store.metric_series(sweep, t.key, "loss") for t in trials]
    kept = [
        (t.key, t.status, t.attempts, t.host, t.resumed_from_step, t.checkpoint_path, t.error)
        for t in trials
    ]
    return [*kept, *map(tuple, series), (store.count_metric_rows(sweep),)]


def test_a_batch_leaves_the_store_as_its_writes_one_by_one(store: ResultsStore) -> None:
    add_sweep(store, "s")
    add_sweep(store, "t")
    for write in WRITES:
        write.apply(store, "s")
    together(store, WRITES, sweep="t")
    assert contents(store, "t") == contents(store, "s")
    assert contents(store)[0][1:4] == ("completed", 2, "h2")  # the second attempt, resumed
    assert store.metric_series("s", "k0", "loss") == [(0, 4.0), (1, 3.0), (2, 9.0)]


def test_record_many_stores_what_its_reports_one_by_one_would(store: ResultsStore) -> None:
    """Three statements for a trial's gathered reports, and the same values as one
    `record_metrics` each: a step reported twice keeps its last values (all of them replaced),
    a resumed attempt's first report drops the later steps, a non-finite value is not stored.
    It also survives a round trip through the spill file's JSON."""
    add_sweep(store, "s")
    add_sweep(store, "t")
    before = [(s, {"loss": 10.0 + s, "gap": 1.0}) for s in range(6)]
    resumed = [(2, {"loss": 2.0}), (3, {"loss": 3.0, "gap": float("inf")}), (3, {"gap": 0.3})]
    for sweep in ("s", "t"):
        store.record_many(sweep, "k0", before)
    for step, metrics in resumed:
        store.record_metrics("s", "k0", step, metrics, first_of_attempt=step == 2)
    many = Write("record_many", {"key": "k0", "reports": resumed, "first_of_attempt": True})
    Write.parse(many.line(), "spill").apply(store, "t")
    for name in ("loss", "gap"):
        assert store.metric_series("t", "k0", name) == store.metric_series("s", "k0", name)
    assert store.metric_series("t", "k0", "loss") == [(0, 10.0), (1, 11.0), (2, 2.0)]
    assert store.metric_series("t", "k0", "gap") == [(0, 1.0), (1, 1.0), (3, 0.3)]
    assert store.trial("t", "k0").last_step == store.trial("s", "k0").last_step == 3


def test_a_batch_with_a_failing_write_writes_nothing(store: ResultsStore) -> None:
    add_sweep(store)
    before = contents(store)
    unknown = Write("record_metrics", {"key": "no-such-trial", "step": 0, "metrics": {"l": 1.0}})
    with pytest.raises(InputError):
        together(store, [*WRITES[:6], unknown])
    assert contents(store) == before


def test_a_batch_is_refused_whole_once_the_lease_moved_on(store: ResultsStore) -> None:
    add_sweep(store)
    store.acquire_lease("s", Holder(id="old", host="host-old", pid=11), 60)
    together(store, WRITES[:3])
    before = contents(store)
    with ResultsStore(store.url) as other:
        other.acquire_lease("s", Holder(id="new", host="host-new", pid=22), 0)
        with pytest.raises(LeaseLostError, match="taken over by process 22"):
            together(store, WRITES[3:])
    assert contents(store) == before


@pytest.mark.slow
@pytest.mark.parametrize("every_s", ["0", "1000"])
def test_a_sweep_records_each_step_once_however_long_it_gathers(
    tmp_path: Path, every_s: str
) -> None:
    """0: each report written as it comes; 1000 s: every report of a trial gathered until its
    end, written then, after its start and placement and before its finish."""
    spec = {
        "name": "gathered",
        "trainer": "landscape",
        "base": {"shifts": 12},
        "parameters": {"temperature": {"grid": [0.01, 0.1, 1.0]}},
        "metric": {"name": "min_loss_gap", "mode": "max"},
    }
    write_spec(tmp_path / "spec.yaml", spec)
    done = orchestrator("submit", "spec.yaml", cwd=tmp_path, GAPSWEEP_RECORD_EVERY_S=every_s)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = stored(tmp_path, "gathered")
    assert [t.status for t in trials] == ["completed"] * 3
    client, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "gathered")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4  # the sweep's run and 3 trials
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        for t in trials:
            steps = [step for step, _ in store.metric_series("gathered", t.key, "loss")]
            assert steps == list(range(12)), t.name
            assert t.host and t.mlflow_last_step == 11, t.name
            history = client.get_metric_history(t.mlflow_run_id, "loss")
            assert sorted(m.step for m in history) == steps, t.name
            assert client.get_run(t.mlflow_run_id).data.tags["gapsweep.host"] == t.host


def test_a_bad_record_interval_is_one_line_and_exit_2(tmp_path: Path) -> None:
    write_spec(tmp_path / "spec.yaml", {"name": "x", "trainer": "landscape", "base": {}})
    done = orchestrator("submit", "spec.yaml", cwd=tmp_path, GAPSWEEP_RECORD_EVERY_S="-1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "GAPSWEEP_RECORD_EVERY_S='-1' is not a non-negative number" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_every_hook_the_recorder_defines_is_one_ray_tune_calls() -> None:
    """A misnamed hook is never called: the timed flush once sat in `on_step`, which Tune
    does not have, and gathered reports waited for the next event."""
    from ray.tune import Callback

    from orchestrator.recorder import Recorder

    hooks = {name for name in vars(Recorder) if name.startswith("on_")}
    assert hooks <= {name for name in dir(Callback) if name.startswith("on_")}
    assert {"on_step_end", "on_experiment_end", "on_checkpoint"} <= hooks
