"""Issue 19: `orchestrator cancel` from a second process stops a running sweep as Ctrl-C would,
through the results store (real local Ray, MLflow and SQLite); `resume` then finishes it.
`orchestrator sweeps` names each sweep's live driver and shows trials left `running` by a
driver that is gone as orphaned."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial
from tests.chaos import launch
from tests.helpers import long_sweep, orchestrator, stored, wait_for, write_spec

pytestmark = pytest.mark.slow


def cell(table: str, sweep: str, column: str) -> str:
    """One cell of `orchestrator sweeps`' table: the sweep's row, the named column."""
    lines = table.splitlines()
    columns = [c.strip() for c in next(line for line in lines if "┃ sweep" in line).split("┃")]
    row = next(line for line in lines if line.startswith(f"│ {sweep} "))
    return [c.strip() for c in row.split("│")][columns.index(column)]


def test_cancel_stops_a_running_sweep_within_10_s_and_resume_finishes_it(tmp_path: Path) -> None:
    write_spec(tmp_path / "long.yaml", long_sweep("long", seeds=4))
    driver = launch(["submit", "long.yaml"], tmp_path, "driver", {})
    try:
        running = lambda: any(t.status == "running" for t in stored(tmp_path, "long"))  # noqa: E731
        wait_for(running, 300, "a running trial")
        listed = orchestrator("sweeps", cwd=tmp_path).stdout
        assert f"pid {driver.pid}" in cell(listed, "long", "driver"), listed
        assert cell(listed, "long", "orphaned") == "" and cell(listed, "long", "running") != ""

        asked = time.monotonic()
        cancel = orchestrator("cancel", "long", cwd=tmp_path)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert (
            f"process {driver.pid}" in cancel.stdout and "orchestrator resume long" in cancel.stdout
        )
        wait_for(lambda: not running(), 10, "the trials to stop after the cancel")
        stopped_after = time.monotonic() - asked
        code = driver.process.wait(timeout=120)
    finally:
        driver.stop()
    print(f"cancelled: trials stopped {stopped_after:.1f} s after `orchestrator cancel`")
    said = " ".join(driver.stderr().split())
    assert code == 1 and "cancelled by `orchestrator cancel`" in said, said
    statuses = {t.status for t in stored(tmp_path, "long")}
    assert "completed" not in statuses or len(statuses) > 1  # the sweep did not run to the end
    assert "stopped" in statuses

    nothing = orchestrator("cancel", "long", cwd=tmp_path)
    assert nothing.returncode == 2 and "no live driver" in nothing.stderr
    resumed = orchestrator("resume", "long", cwd=tmp_path)  # a later driver is not cancelled
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert {t.status for t in stored(tmp_path, "long")} == {"completed"}


def test_sweeps_shows_the_live_driver_and_trials_of_a_gone_one_as_orphaned(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    trials = [NewTrial(f"k{i}", f"seed={i}", i, {}, {"seed": i}) for i in range(3)]
    with ResultsStore(url) as store:
        store.upsert_sweep("left", "dual_encoder", "name: left", "h", ("gap_norm", "min"))
        store.register_trials("left", trials)
        store.mark_running("left", "k0", "host", None)  # its driver was killed: no lease
        with store.holding_lease("left"):
            live = orchestrator("sweeps", cwd=tmp_path)
            status_live = orchestrator("status", "left", cwd=tmp_path)
    gone = orchestrator("sweeps", cwd=tmp_path)
    status_gone = orchestrator("status", "left", cwd=tmp_path)
    assert f"pid {os.getpid()}" in cell(live.stdout, "left", "driver")
    assert cell(live.stdout, "left", "running") == "1" and "orphaned" not in status_live.stdout
    assert (
        cell(gone.stdout, "left", "orphaned") == "1" and cell(gone.stdout, "left", "running") == ""
    )
    assert cell(gone.stdout, "left", "driver") == ""
    assert "orphaned" in status_gone.stdout
