"""The sweep lease in real sweeps (local Ray, MLflow in a SQLite file): a driver paused past the
lease timeout and taken over writes nothing more (the results store in a SQLite file and in a
database of the real PostgreSQL server); SIGTERM stops a sweep as Ctrl-C does; `orchestrator
sync` is refused beside a live driver. The store's side of the lease is in tests/test_store.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from orchestrator.store.repository import ResultsStore
from tests.helpers import (
    kill_session,
    long_sweep,
    mlflow_runs,
    orchestrator,
    start_orchestrator,
    stored,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.slow

TIMEOUT_S = 4  # GAPSWEEP_LEASE_TIMEOUT_S of these drivers: a takeover after seconds, not minutes
STEPS = list(range(0, 385, 16))  # LONG's reports


def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'results.db'}"


def assert_recorded_once(workdir: Path, url: str, sweep: str) -> None:
    """Every trial completed, with one row, one MLflow child run and one value per step."""
    trials = stored(url, sweep)
    assert [t.status for t in trials] == ["completed"] * 2
    client, runs = mlflow_runs(f"sqlite:///{workdir / 'mlflow.db'}", sweep)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.info.run_id for r in children} == {t.mlflow_run_id for t in trials}
    assert len(children) == len(trials)
    with ResultsStore(url) as store:
        for t in trials:
            assert [step for step, _ in store.metric_series(sweep, t.key, "gap_norm")] == STEPS
            history = client.get_metric_history(t.mlflow_run_id, "gap_norm")
            assert sorted(m.step for m in history) == STEPS, t.name


def rows(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query), params)]
    finally:
        engine.dispose()


def lease(url: str, sweep: str) -> tuple[int, int, Any] | None:
    """(epoch, holder pid, released_at) of the sweep's lease row."""
    query = "SELECT epoch, pid, released_at FROM leases WHERE sweep_name = :sweep"
    found = rows(url, query, sweep=sweep)
    return None if not found else (int(found[0][0]), int(found[0][1]), found[0][2])


def snapshot(url: str) -> tuple[list[Any], list[Any]]:
    """Every trial row and every metric row, as they are now."""
    return rows(url, "SELECT * FROM trials ORDER BY id"), rows(
        url, "SELECT * FROM metrics ORDER BY id"
    )


def started(driver: subprocess.Popen[str], url: str, sweep: str, step: int) -> None:
    def reached() -> bool:
        assert driver.poll() is None, driver.communicate()[1]
        return any((t.last_step or 0) >= step for t in stored(url, sweep))

    wait_for(reached, 300, f"a trial to pass step {step}")


def in_a_transaction(url: str) -> bool:
    """Whether another connection is inside a transaction on this store right now: on
    PostgreSQL a backend active or idle in a transaction; on SQLite the write lock taken."""
    if url.startswith("postgresql"):
        busy = rows(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
            "pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction', "
            "'idle in transaction (aborted)')",
        )
        return bool(busy[0][0])
    engine = create_engine(url, connect_args={"timeout": 0})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("ROLLBACK")
        return False
    except Exception:  # "database is locked": a writer holds it
        return True
    finally:
        engine.dispose()


def pause_between_transactions(driver: subprocess.Popen[str], url: str) -> None:
    """SIGSTOP the driver at a moment it holds no transaction open, as a stall in a long MLflow
    call or a suspended laptop between writes does. A driver frozen inside one keeps its row
    or write lock until it runs again (docs/reliability.md): no takeover can happen then, and
    that case is not what this test is about."""
    for _ in range(100):
        os.kill(driver.pid, signal.SIGSTOP)
        time.sleep(0.2)  # a transaction in flight shows itself within this
        if not in_a_transaction(url):
            return
        os.kill(driver.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the driver was inside a transaction at every try to pause it")


def test_a_paused_driver_taken_over_writes_nothing_more(tmp_path: Path, results_db: str) -> None:
    """The first driver is SIGSTOPped past the lease timeout; a second submit takes the sweep
    over. The second is paused in its turn, the first continued: the store does not change by
    one row while the first stops, and the first exits 1 naming who took over. The second then
    finishes the sweep with every trial completed and every step recorded once."""
    write_spec(tmp_path / "s.yaml", long_sweep("fenced"))
    env = {"GAPSWEEP_LEASE_TIMEOUT_S": str(TIMEOUT_S), "ORCHESTRATOR_RESULTS_DB": results_db}
    first = start_orchestrator("submit", "s.yaml", cwd=tmp_path, **env)
    second: subprocess.Popen[str] | None = None
    try:
        started(first, results_db, "fenced", 16)
        pause_between_transactions(first, results_db)
        time.sleep(TIMEOUT_S + 2)
        second = start_orchestrator("submit", "s.yaml", cwd=tmp_path, **env)
        wait_for(lambda: (lease(results_db, "fenced") or (0,))[0] == 2, 120, "the takeover")
        assert lease(results_db, "fenced") == (2, second.pid, None)
        time.sleep(0.5)  # past its first writes: the second is starting Ray now
        pause_between_transactions(second, results_db)
        before = snapshot(results_db)
        os.kill(first.pid, signal.SIGCONT)
        _, stderr = first.communicate(timeout=180)
        assert first.returncode == 1, stderr
        assert f"was taken over by process {second.pid}" in stderr, stderr
        assert "this driver wrote nothing after that" in stderr, stderr
        assert snapshot(results_db) == before, "the first driver wrote after the takeover"
        os.kill(second.pid, signal.SIGCONT)
        _, stderr = second.communicate(timeout=600)
        assert second.returncode == 0, stderr
    finally:
        for driver in (first, second):
            if driver is not None:
                kill_session(driver.pid, signal.SIGCONT)
                kill_session(driver.pid)
    found = lease(results_db, "fenced")
    assert found is not None and found[2] is not None, "the second did not release the lease"
    assert_recorded_once(tmp_path, results_db, "fenced")


def test_sigterm_stops_gracefully_as_ctrl_c_does(tmp_path: Path) -> None:
    write_spec(tmp_path / "s.yaml", long_sweep("terminated"))
    driver = start_orchestrator("submit", "s.yaml", cwd=tmp_path)
    try:
        started(driver, sqlite_url(tmp_path), "terminated", 16)
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=120)
    finally:
        kill_session(driver.pid)
    assert driver.returncode == 1, stderr
    assert "orchestrator resume terminated" in stderr, stderr
    assert {t.status for t in stored(sqlite_url(tmp_path), "terminated")} <= {
        "stopped",
        "completed",
    }
    found = lease(sqlite_url(tmp_path), "terminated")
    assert found is not None and found[2] is not None, "the lease was not released"
    result = orchestrator("resume", "terminated", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_recorded_once(tmp_path, sqlite_url(tmp_path), "terminated")


def test_sync_is_refused_beside_a_live_driver(tmp_path: Path) -> None:
    write_spec(tmp_path / "s.yaml", long_sweep("synced"))
    driver = start_orchestrator("submit", "s.yaml", cwd=tmp_path)
    try:
        started(driver, sqlite_url(tmp_path), "synced", 16)
        refused = orchestrator("sync", "synced", cwd=tmp_path)
        assert refused.returncode == 1, refused.stderr
        assert f"already being run by process {driver.pid}" in refused.stderr, refused.stderr
        assert lease(sqlite_url(tmp_path), "synced") == (1, driver.pid, None)  # untouched
    finally:
        kill_session(driver.pid)
    driver.wait(timeout=30)
    # The driver is gone: sync takes its lease over (a dead holder on this host) and releases it.
    synced = orchestrator("sync", "synced", cwd=tmp_path)
    assert "already being run" not in synced.stderr, synced.stderr
    found = lease(sqlite_url(tmp_path), "synced")
    assert found is not None and found[0] == 2 and found[2] is not None, found
