"""The fault matrix: each test injects its fault for real into a real sweep (local Ray, MLflow
SQLite store, and the results store in a SQLite file and in a database of the real PostgreSQL
server) and checks that nothing is lost or recorded twice."""

from __future__ import annotations

import errno
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.plan import expand
from orchestrator.spec import load_spec
from tests.helpers import (
    kill_session,
    long_sweep,
    mlflow_runs,
    orchestrator,
    sql_steps,
    start_orchestrator,
    stored,
    submit_and_kill_past,
    sweep_spec,
    wait_for,
    write_spec,
)
from trainers.checkpoint import load_state

pytestmark = pytest.mark.slow


TWO_EPOCHS = {"optim": {"epochs": 2}}  # 8 steps, reported every 2


def assert_recorded_once(
    workdir: Path, results_db: str, sweep: str, expected_steps: list[int]
) -> None:
    """One row, one MLflow child run and one value per step for every trial."""
    trials = stored(results_db, sweep)
    client, runs = mlflow_runs(f"sqlite:///{workdir / 'mlflow.db'}", sweep)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == len(trials)
    assert {r.info.run_id for r in children} == {t.mlflow_run_id for t in trials}
    for t in trials:
        assert sql_steps(results_db, sweep, t.key) == expected_steps, t.name
        history = client.get_metric_history(t.mlflow_run_id, "gap_norm")
        assert sorted(m.step for m in history) == expected_steps, t.name


def test_a_trial_that_raises_is_retried_from_its_checkpoint(
    tmp_path: Path, results_db: str
) -> None:
    write_spec(tmp_path / "s.yaml", sweep_spec("raise-once", max_failures=1, base=TWO_EPOCHS))
    result = orchestrator(
        "submit",
        "s.yaml",
        cwd=tmp_path,
        ORCHESTRATOR_RESULTS_DB=results_db,
        GAPSWEEP_INJECT_FAULT="*@6",
    )
    assert result.returncode == 0, result.stderr
    trials = stored(results_db, "raise-once")
    assert [(t.status, t.attempts, t.resumed_from_step) for t in trials] == [
        ("completed", 2, 4),
        ("completed", 2, 4),
    ]
    assert_recorded_once(tmp_path, results_db, "raise-once", [0, 2, 4, 6, 8])


def test_a_trial_that_keeps_raising_fails_and_the_others_finish(
    tmp_path: Path, results_db: str
) -> None:
    path = write_spec(
        tmp_path / "s.yaml", sweep_spec("raise-always", max_failures=1, base=TWO_EPOCHS)
    )
    doomed = expand(load_spec(path)).trials[0]
    result = orchestrator(
        "submit",
        "s.yaml",
        cwd=tmp_path,
        ORCHESTRATOR_RESULTS_DB=results_db,
        GAPSWEEP_INJECT_FAULT=f"{doomed.key}@4!",
    )
    assert result.returncode == 1
    assert "1 of 2 trials failed" in result.stderr
    assert "injected fault at step 4" in result.stderr
    failed, other = stored(results_db, "raise-always")
    assert (failed.key, failed.status, failed.attempts) == (doomed.key, "failed", 2)
    assert failed.error == "RuntimeError: injected fault at step 4"
    assert other.status == "completed"
    client, _ = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "raise-always")
    run = client.get_run(failed.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["gapsweep.error"] == failed.error


def test_a_non_finite_loss_fails_the_trial_at_once(tmp_path: Path, results_db: str) -> None:
    # tau = 1e-45 makes 1/tau overflow float32: the first training step's loss is not finite.
    nan_spec = sweep_spec("nan", seeds=1, max_failures=2, base={"loss": {"temperature": 1e-45}})
    write_spec(tmp_path / "s.yaml", nan_spec)
    result = orchestrator("submit", "s.yaml", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=results_db)
    assert result.returncode == 1
    (trial,) = stored(results_db, "nan")
    assert (trial.status, trial.attempts) == ("failed", 1)  # not retried: it would diverge again
    assert trial.error == "non-finite loss at step 1"


def test_unreachable_services_are_reported_before_anything_starts(tmp_path: Path) -> None:
    write_spec(tmp_path / "s.yaml", sweep_spec("services"))
    bad_db = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nope?connect_timeout=3"
    result = orchestrator("submit", "s.yaml", "--results-db", bad_db, cwd=tmp_path)
    assert result.returncode == 1
    assert "results store" in result.stderr and "unreachable" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    result = orchestrator("submit", "s.yaml", "--mlflow-uri", "http://127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 1
    assert "MLflow" in result.stderr and "unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # no trial was started


def test_a_second_submit_of_a_running_sweep_is_refused(tmp_path: Path, results_db: str) -> None:
    write_spec(tmp_path / "s.yaml", long_sweep("busy"))
    first = start_orchestrator("submit", "s.yaml", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=results_db)
    try:
        wait_for(
            lambda: any(t.status == "running" for t in stored(results_db, "busy")),
            240,
            "the first submit to start a trial",
        )
        second = orchestrator("submit", "s.yaml", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=results_db)
        assert second.returncode == 1
        assert "already being run by process" in second.stderr
        assert first.wait(timeout=600) == 0
    finally:
        kill_session(first.pid)
    assert [(t.status, t.attempts) for t in stored(results_db, "busy")] == [("completed", 1)] * 2


def test_a_killed_driver_is_resumed_by_submitting_again(tmp_path: Path, results_db: str) -> None:
    write_spec(tmp_path / "s.yaml", long_sweep("killed"))
    interrupted = submit_and_kill_past(tmp_path, results_db, "killed", 32)
    assert any(interrupted.values())
    result = orchestrator("submit", "s.yaml", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=results_db)
    assert result.returncode == 0, result.stderr
    for t in stored(results_db, "killed"):
        assert t.status == "completed"
        if t.key in interrupted:
            assert t.attempts == 2
            # It went on from the last checkpoint the store knew of, not from scratch.
            assert t.resumed_from_step == interrupted[t.key]
    assert_recorded_once(tmp_path, results_db, "killed", list(range(0, 385, 16)))


def test_ctrl_c_stops_gracefully_and_resume_finishes(tmp_path: Path, results_db: str) -> None:
    write_spec(tmp_path / "s.yaml", long_sweep("interrupted"))
    driver = start_orchestrator(
        "submit", "s.yaml", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=results_db
    )
    try:
        wait_for(
            lambda: any((t.last_step or 0) >= 16 for t in stored(results_db, "interrupted")),
            300,
            "a trial to pass step 16",
        )
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        kill_session(driver.pid)
    assert driver.returncode == 1
    assert "orchestrator resume interrupted" in stderr
    assert {t.status for t in stored(results_db, "interrupted")} <= {"stopped", "completed"}
    result = orchestrator("resume", "interrupted", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=results_db)
    assert result.returncode == 0, result.stderr
    assert [t.status for t in stored(results_db, "interrupted")] == ["completed"] * 2
    assert_recorded_once(tmp_path, results_db, "interrupted", list(range(0, 385, 16)))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MiB filesystem (tmpfs) that the test can fill up; needs root, as CI runs."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_fails_the_trial_and_keeps_its_checkpoints(
    tmp_path: Path, small_disk: Path, results_db: str
) -> None:
    write_spec(tmp_path / "s.yaml", long_sweep("full", seeds=1))
    storage = str(small_disk / "runs")
    driver = start_orchestrator(
        "submit", "s.yaml", "--storage", storage, cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=results_db
    )
    try:
        wait_for(
            lambda: any(t.checkpoint_path for t in stored(results_db, "full")),
            300,
            "a first checkpoint",
        )
        filler = fill_up(small_disk)
        _, stderr = driver.communicate(timeout=600)
    finally:
        kill_session(driver.pid)
    (trial,) = stored(results_db, "full")
    assert driver.returncode == 1, stderr
    assert trial.status == "failed"
    assert "No space left on device" in (trial.error or ""), trial.error
    # The last checkpoint written before the disk filled up is intact and resumable.
    assert trial.checkpoint_path is not None
    assert load_state(Path(trial.checkpoint_path)).step == trial.last_step
    filler.unlink()
    again = orchestrator(
        "submit",
        "s.yaml",
        "--storage",
        storage,
        "--rerun-failed",
        cwd=tmp_path,
        ORCHESTRATOR_RESULTS_DB=results_db,
    )
    assert again.returncode == 0, again.stderr
    (trial,) = stored(results_db, "full")
    assert trial.status == "completed" and trial.resumed_from_step is not None
