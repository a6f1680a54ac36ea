"""The results store's contract, run over both backends: a SQLite file and the real PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (override with GAPSWEEP_TEST_POSTGRES_URL); each test
gets a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from orchestrator.errors import InputError, LeaseLostError, ServiceError, SweepBusyError
from orchestrator.store.engine import mask_url
from orchestrator.store.lease import Holder
from orchestrator.store.repository import ResultsStore
from orchestrator.store.testing import POSTGRES_ADMIN_URL, temporary_postgres_database
from orchestrator.store.views import NewTrial
from tests.helpers import NEEDS_POSTGRES, missing_postgres


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if why := missing_postgres():
        pytest.skip(why)
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultsStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'results.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = ResultsStore(url)
    try:
        yield s
    finally:
        s.close()


def new_trials(n: int) -> list[NewTrial]:
    return [
        NewTrial(
            key=f"k{i}",
            name=f"seed={i}",
            position=i,
            config={"seed": i, "loss": {"temperature": 0.1}},
            varied={"seed": i},
        )
        for i in range(n)
    ]


def add_sweep(store: ResultsStore, name: str = "s", n: int = 3) -> None:
    store.upsert_sweep(name, "dual_encoder", "name: s\n", "abc", ("gap_norm", "min"))
    store.register_trials(name, new_trials(n))


def test_register_and_read_back(store: ResultsStore) -> None:
    add_sweep(store)
    trials = store.trials("s")
    assert [t.key for t in trials] == ["k0", "k1", "k2"]
    assert all(t.status == "pending" and t.attempts == 0 for t in trials)
    assert trials[1].config == {"seed": 1, "loss": {"temperature": 0.1}}
    assert trials[1].varied == {"seed": 1}


def test_trial_lifecycle(store: ResultsStore) -> None:
    add_sweep(store)
    assert store.mark_running("s", "k0", host=None, node_id=None) == 1
    store.set_placement("s", "k0", "host-a", "node-1")
    store.set_trial_run_id("s", "k0", "run-1")
    store.record_metrics("s", "k0", 0, {"loss": 4.0, "gap_norm": 1.5})
    store.record_metrics("s", "k0", 10, {"loss": 2.0, "gap_norm": 0.5, "bad": float("nan")})
    store.finish_trial("s", "k0", "completed", {"loss": 2.0, "gap_norm": 0.5})
    t = store.trials("s")[0]
    assert (t.status, t.attempts, t.host, t.node_id, t.mlflow_run_id) == (
        "completed",
        1,
        "host-a",
        "node-1",
        "run-1",
    )
    assert t.metrics == {"loss": 2.0, "gap_norm": 0.5}
    assert t.started_at is not None and t.ended_at is not None
    assert store.metric_series("s", "k0", "loss") == [(0, 4.0), (10, 2.0)]
    assert store.count_metric_rows("s") == 4  # the NaN is not stored


def test_non_finite_final_metrics_are_json_null_with_their_kind_kept(store: ResultsStore) -> None:
    """PostgreSQL's JSON refuses NaN and Infinity: such a final value is stored as JSON null, its
    kind kept by name, and left out of the trial's metrics."""
    add_sweep(store)
    store.mark_running("s", "k0", None, None)
    final = {"loss": float("nan"), "gap_norm": 0.5, "up": float("inf"), "down": float("-inf")}
    store.finish_trial("s", "k0", "completed", final)
    t = store.trials("s")[0]
    assert t.metrics == {"gap_norm": 0.5}
    assert t.non_finite == {"loss": "nan", "up": "inf", "down": "-inf"}
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT final_metrics FROM trials WHERE key = 'k0'")).scalar()
    raw = stored if isinstance(stored, dict) else json.loads(stored)
    assert raw == {"loss": None, "gap_norm": 0.5, "up": None, "down": None}
    assert store.mark_running("s", "k0", None, None) == 2  # a new attempt clears them
    assert store.trials("s")[0].non_finite == {}


def test_a_step_is_recorded_once(store: ResultsStore) -> None:
    add_sweep(store)
    store.mark_running("s", "k0", None, None)
    store.record_metrics("s", "k0", 5, {"loss": 3.0})
    store.record_metrics("s", "k0", 5, {"loss": 2.5})
    assert store.metric_series("s", "k0", "loss") == [(5, 2.5)]


def test_a_new_attempt_continues_the_series_from_where_it_resumes(store: ResultsStore) -> None:
    add_sweep(store)
    store.mark_running("s", "k1", None, None)
    for step in (0, 2, 4, 6):
        store.record_metrics("s", "k1", step, {"loss": 10.0 - step}, first_of_attempt=step == 0)
    store.set_checkpoint("s", "k1", "/ckpt/4")
    store.finish_trial("s", "k1", "failed", None, "RuntimeError: boom")
    assert store.trials("s")[1].error == "RuntimeError: boom"
    assert store.mark_running("s", "k1", None, None) == 2
    view = store.trials("s")[1]
    assert (view.error, view.checkpoint_path, view.last_step) == (None, "/ckpt/4", 6)
    # Resumed from the step-4 checkpoint: its first report is step 6, which replaces the tail.
    store.record_metrics("s", "k1", 6, {"loss": 3.5}, first_of_attempt=True)
    store.record_metrics("s", "k1", 8, {"loss": 2.0})
    assert store.metric_series("s", "k1", "loss") == [
        (0, 10.0),
        (2, 8.0),
        (4, 6.0),
        (6, 3.5),
        (8, 2.0),
    ]


def test_registering_again_never_resets_a_completed_trial(store: ResultsStore) -> None:
    add_sweep(store)
    store.mark_running("s", "k0", None, None)
    store.finish_trial("s", "k0", "completed", {"loss": 1.0})
    statuses = store.register_trials("s", new_trials(4))
    assert statuses == {"k0": "completed", "k1": "pending", "k2": "pending", "k3": "pending"}
    assert len(store.trials("s")) == 4
    assert store.trials("s")[0].metrics == {"loss": 1.0}


def test_sweeps_are_separate_and_upsert_is_idempotent(store: ResultsStore) -> None:
    add_sweep(store, "a", 2)
    add_sweep(store, "b", 1)
    store.upsert_sweep("a", "dual_encoder", "name: a\n", "def", ("loss", "min"))
    assert [s.name for s in store.list_sweeps()] == ["a", "b"]
    assert store.get_sweep("a") is not None and store.get_sweep("a").metric_name == "loss"  # type: ignore[union-attr]
    assert len(store.trials("a")) == 2 and len(store.trials("b")) == 1
    store.set_sweep_mlflow("b", "exp-1", "run-9")
    assert store.get_sweep("b").mlflow_run_id == "run-9"  # type: ignore[union-attr]


def test_stop_unfinished_marks_only_running_trials(store: ResultsStore) -> None:
    add_sweep(store)
    store.mark_running("s", "k0", None, None)
    store.finish_trial("s", "k0", "completed", {"loss": 1.0})
    store.mark_running("s", "k1", None, None)
    assert store.stop_unfinished("s", ["k0", "k1", "k2"]) == ["k1"]
    assert [t.status for t in store.trials("s")] == ["completed", "stopped", "pending"]


def test_unknown_sweep_is_an_input_error(store: ResultsStore) -> None:
    with pytest.raises(InputError, match="no sweep named 'nope'"):
        store.trials("nope")


def test_terminal_status_is_checked(store: ResultsStore) -> None:
    add_sweep(store)
    with pytest.raises(ValueError, match="not a terminal status"):
        store.finish_trial("s", "k0", "running", None)


def test_unreachable_database_is_a_service_error_with_masked_password() -> None:
    url = "postgresql+psycopg://user:secret@127.0.0.1:1/nodb?connect_timeout=2"
    with pytest.raises(ServiceError) as info:
        ResultsStore(url)
    assert "secret" not in str(info.value)
    assert "unreachable" in str(info.value)


def test_bad_url_is_an_input_error() -> None:
    with pytest.raises(InputError):
        ResultsStore("notadb://x")
    assert "secret" not in mask_url("postgresql://u:secret@h/db")


def test_schema_is_at_the_shipped_head(store: ResultsStore) -> None:
    from orchestrator.store.revision import HEAD_REVISION, stored_revision
    from orchestrator.store.schema import current_revision, head_revision

    assert current_revision(store.engine) == head_revision()
    # The revision read without Alembic (the fast path of every open) is the same.
    assert stored_revision(store.engine) == HEAD_REVISION == head_revision()
    # Opening it again changes nothing.
    again = ResultsStore(store.url)
    assert again.schema_change == (head_revision(), head_revision())
    again.close()


def test_a_store_from_a_newer_gapsweep_is_refused(store: ResultsStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(InputError, match="newer than this gapsweep knows"):
        ResultsStore(store.url)


def test_one_lease_per_sweep(store: ResultsStore) -> None:
    first = Holder(id="a", host="host-1", pid=1)
    second = Holder(id="b", host="host-2", pid=2)
    store.acquire_lease("s", first, stale_after_s=60)
    with pytest.raises(SweepBusyError, match="already being run by process 1 on host-1"):
        store.acquire_lease("s", second, stale_after_s=60)
    store.acquire_lease("other", second, stale_after_s=60)  # other sweeps are independent
    store.release_lease("s")
    store.acquire_lease("s", second, stale_after_s=60)


def test_a_stale_lease_is_taken_over(store: ResultsStore) -> None:
    store.acquire_lease("s", Holder(id="a", host="elsewhere", pid=1), stale_after_s=60)
    store.acquire_lease("s", Holder(id="b", host="here", pid=2), stale_after_s=0)


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over(store: ResultsStore) -> None:
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    me = Holder.this_process()
    store.acquire_lease("s", Holder(id="dead", host=me.host, pid=int(gone.stdout)), 60)
    store.acquire_lease("s", me, stale_after_s=60)
    with pytest.raises(SweepBusyError):
        store.acquire_lease("s", Holder(id="c", host=me.host, pid=me.pid), stale_after_s=60)


def test_every_acquisition_gets_a_larger_epoch(store: ResultsStore) -> None:
    """Taken, released and taken again, or taken over: the epoch only grows (the row stays)."""
    a, b = Holder(id="a", host="h", pid=1), Holder(id="b", host="h2", pid=2)
    epochs = [store.acquire_lease("s", a, 60).epoch]
    store.release_lease("s")
    epochs.append(store.acquire_lease("s", a, 60).epoch)
    epochs.append(store.acquire_lease("s", b, stale_after_s=0).epoch)  # a takeover
    store.release_lease("s")
    epochs.append(store.acquire_lease("s", b, 60).epoch)
    assert epochs == [1, 2, 3, 4]
    assert store.acquire_lease("other", a, 60).epoch == 1  # per sweep


def test_a_stale_holder_writes_nothing_after_a_takeover(store: ResultsStore) -> None:
    """Two stores on one database, as two drivers would have: once the second took the lease
    over, every write of the first is refused, naming who took over, and changes nothing."""
    add_sweep(store)
    store.acquire_lease("s", Holder(id="old", host="host-old", pid=11), 60)
    store.mark_running("s", "k0", None, None)
    store.record_metrics("s", "k0", 0, {"loss": 4.0}, first_of_attempt=True)
    with ResultsStore(store.url) as other:
        new = other.acquire_lease("s", Holder(id="new", host="host-new", pid=22), 0)
        assert new.epoch == 2
        before = store.trials("s")
        writes = {
            "record_metrics": lambda: store.record_metrics("s", "k0", 2, {"loss": 3.0}),
            "finish_trial": lambda: store.finish_trial("s", "k0", "completed", {"loss": 3.0}),
            "mark_running": lambda: store.mark_running("s", "k1", None, None),
            "set_placement": lambda: store.set_placement("s", "k0", "h", "n"),
            "set_checkpoint": lambda: store.set_checkpoint("s", "k0", "/ckpt"),
            "set_trial_run_id": lambda: store.set_trial_run_id("s", "k0", "run"),
            "set_mlflow_step": lambda: store.set_mlflow_step("s", "k0", 0),
            "stop_unfinished": lambda: store.stop_unfinished("s", ["k0"]),
            "set_sweep_mlflow": lambda: store.set_sweep_mlflow("s", "e", "r"),
            "register_trials": lambda: store.register_trials("s", new_trials(5)),
            "heartbeat": lambda: store.heartbeat("s"),
            "check_lease": lambda: store.check_lease("s"),
        }
        for name, write in writes.items():
            with pytest.raises(LeaseLostError, match="taken over by process 22 on host-new"):
                write()
                pytest.fail(f"{name} wrote after the takeover")
        assert store.trials("s") == before, "a refused write changed something"
        assert store.count_metric_rows("s") == 1
        store.release_lease("s")  # releasing a lost lease leaves the new holder's alone
        other.record_metrics("s", "k0", 2, {"loss": 3.0})
        with pytest.raises(SweepBusyError, match="process 22 on host-new"):
            store.acquire_lease("s", Holder(id="third", host="h3", pid=33), 60)
    assert store.metric_series("s", "k0", "loss") == [(0, 4.0), (2, 3.0)]


def test_staleness_is_judged_by_the_database_clock(store: ResultsStore) -> None:
    import time

    store.acquire_lease("s", Holder(id="a", host="h", pid=1), 60)
    time.sleep(1.5)
    with ResultsStore(store.url) as other:
        with pytest.raises(SweepBusyError, match=r"last heartbeat [12] s ago"):
            other.acquire_lease("s", Holder(id="b", host="h2", pid=2), stale_after_s=60)
        assert other.acquire_lease("s", Holder(id="b", host="h2", pid=2), 1.0).epoch == 2


def test_a_held_lease_is_kept_fresh_by_its_heartbeat_thread(store: ResultsStore) -> None:
    import time

    with store.holding_lease("s", stale_after_s=1.0) as fence, ResultsStore(store.url) as other:
        time.sleep(2.5)  # more than twice the timeout: only the thread's beats keep it
        with pytest.raises(SweepBusyError, match="already being run"):
            other.acquire_lease("s", Holder(id="b", host="h2", pid=2), stale_after_s=1.0)
        assert fence.lost is None
    with ResultsStore(store.url) as other:  # released at the end of the block
        assert other.acquire_lease("s", Holder(id="b", host="h2", pid=2), 60).epoch == 2


def test_a_heartbeat_that_finds_the_lease_taken_over_flags_it(store: ResultsStore) -> None:
    import time

    add_sweep(store)
    with store.holding_lease("s", stale_after_s=1.0) as fence, ResultsStore(store.url) as other:
        other.acquire_lease("s", Holder(id="b", host="h2", pid=2), stale_after_s=0)
        deadline = time.monotonic() + 5
        while fence.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fence.lost is not None and "process 2 on h2" in str(fence.lost)
        with pytest.raises(LeaseLostError):
            store.set_checkpoint("s", "k0", "/late")
    assert store.trials("s")[0].checkpoint_path is None


def test_the_lease_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.store import lease

    monkeypatch.delenv(lease.TIMEOUT_ENV, raising=False)
    assert lease.timeout_s() == 120.0
    monkeypatch.setenv(lease.TIMEOUT_ENV, "4.5")
    assert lease.timeout_s() == 4.5
    assert lease.heartbeat_every_s(4.5) < 4.5 / 2  # at least two beats fit into the timeout
    for bad in ("soon", "0", "-3", "nan"):
        monkeypatch.setenv(lease.TIMEOUT_ENV, bad)
        with pytest.raises(InputError, match="GAPSWEEP_LEASE_TIMEOUT_S"):
            lease.timeout_s()


def test_two_processes_opening_a_fresh_store_at_once(tmp_path: Path) -> None:
    """`orchestrator results` may open a store while `submit` is still creating it."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = (
        "import sys; from orchestrator.store.repository import ResultsStore; "
        "ResultsStore(sys.argv[1])"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    from orchestrator.store.schema import current_revision, head_revision

    store = ResultsStore(url)
    assert current_revision(store.engine) == head_revision()
    store.close()


@NEEDS_POSTGRES
def test_a_database_gone_mid_use_is_a_service_error_from_every_method(tmp_path: Path) -> None:
    """Not only the constructor: a read, a write and the lease of a store whose database was
    dropped under it (PostgreSQL, connections terminated) each raise ServiceError naming the
    store by its masked URL, never the driver's own exception."""
    with temporary_postgres_database() as url:
        with_password = url.replace("postgres@", "postgres:s3cret@")
        store = ResultsStore(with_password)
        add_sweep(store)
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()
        calls = {
            "trials": lambda: store.trials("s"),
            "record_metrics": lambda: store.record_metrics("s", "k0", 1, {"loss": 0.5}),
            "acquire_lease": lambda: store.acquire_lease("s", Holder.this_process(), 60.0),
        }
        for name, call in calls.items():
            with pytest.raises(ServiceError) as caught:
                call()
            message = str(caught.value)
            assert "s3cret" not in message and "***" in message, (name, message)
        store.close()


def test_a_sqlite_store_locked_past_its_busy_timeout_is_tried_again(tmp_path: Path) -> None:
    """Another process's write transaction holds the file past SQLite's 10 s busy timeout: the
    write waits, is tried again, and lands once the lock is gone."""
    import sqlite3
    import threading
    import time

    url = f"sqlite:///{tmp_path / 'results.db'}"
    with ResultsStore(url) as store:
        add_sweep(store)
        locker = sqlite3.connect(
            tmp_path / "results.db", isolation_level=None, check_same_thread=False
        )
        locker.execute("BEGIN IMMEDIATE")
        threading.Timer(11.0, locker.rollback).start()
        began = time.monotonic()
        store.record_metrics("s", "k0", 0, {"loss": 1.0})
        assert time.monotonic() - began > 10.0
        assert store.metric_series("s", "k0", "loss") == [(0, 1.0)]
        locker.close()


@NEEDS_POSTGRES
def test_postgres_connections_lost_mid_use_are_replaced(postgres_url: str) -> None:
    """The server ends the store's connections (as a restart does): idle ones in the pool are
    replaced before use, and a write whose connection dies under it is tried again."""
    import threading
    import time

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = postgres_url.rsplit("/", 1)[1]
    others = "datname = :db AND pid <> pg_backend_pid()"

    def terminate(where: str = "") -> int:
        with admin.connect() as conn:
            query = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}"
            return len(conn.execute(text(query + where), {"db": database}).all())

    with ResultsStore(postgres_url) as store:
        add_sweep(store)
        assert terminate() >= 1  # the pooled, idle connection
        store.record_metrics("s", "k0", 0, {"loss": 1.0})
        # A write blocked on a row lock is cut off mid-transaction, then tried again.
        blocker = create_engine(postgres_url).connect()
        blocker.execute(text("SELECT id FROM trials WHERE key = 'k0' FOR UPDATE"))
        killed: list[int] = []

        def cut_the_waiting_write() -> None:
            for _ in range(100):
                time.sleep(0.1)
                if n := terminate(" AND wait_event_type = 'Lock'"):
                    killed.append(n)
                    blocker.commit()
                    return

        cutter = threading.Thread(target=cut_the_waiting_write)
        cutter.start()
        store.set_checkpoint("s", "k0", "/ckpt/2")
        cutter.join()
        blocker.close()
        assert killed, "the write never waited on the lock"
        assert store.trials("s")[0].checkpoint_path == "/ckpt/2"
        assert store.metric_series("s", "k0", "loss") == [(0, 1.0)]
    admin.dispose()


def test_the_store_is_a_context_manager_that_disposes_its_connections(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    with ResultsStore(url) as store:
        add_sweep(store)
        assert store.engine.pool.checkedin() == 1  # the connection the calls above returned
    assert store.engine.pool.checkedin() == 0
    with ResultsStore(url) as again:
        assert [t.key for t in again.trials("s")] == ["k0", "k1", "k2"]
