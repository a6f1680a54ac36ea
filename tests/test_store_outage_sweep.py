"""Issue 16: the results store away for longer than its retries (~7 s) in the middle of a real
sweep (`orchestrator submit`, local Ray, MLflow in a SQLite file), with the store in a private
PostgreSQL server (tests/chaos.py) that the test stops and starts again.

- Away until the driver has kept more results than memory holds (past 8, in the spill file)
  and for 12 s at least (past the ~7 s of retries), then back: the sweep goes on and
  completes; the results kept meanwhile go in, in order; every trial once, every step once,
  in SQL and in MLflow. (20 s away left too little of a busy CI machine's sweep to show the
  kept results going in before its end.)
- Never back while the driver runs: past GAPSWEEP_PENDING_MAX kept results the sweep stops, the
  driver waits GAPSWEEP_STORE_WAIT_S, leaves them in the spill file and says how they will be
  recorded; submitting again once the store is back records them first, and the sweep
  completes with every step once.

The measured outage and the number of results kept are printed (pytest -s)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.plan import expand
from orchestrator.spec import load_spec
from orchestrator.store.pending import spill_path
from tests.chaos import (
    Launched,
    PrivatePostgres,
    Probe,
    create_database,
    launch,
    mlflow_violations,
    private_postgres_or_skip,
    sql_violations,
)
from tests.helpers import sweep_spec, wait_for, write_spec

pytestmark = pytest.mark.slow

OUTAGE_S = 12.0
# Trials of 1,536 steps, a report every 32 (49 of them): about 20 s each on 2 idle cores, so
# that the sweep outlasts the outage.
SHAPE = {"data": {"n_train": 256}, "optim": {"epochs": 96}, "eval": {"every_steps": 32}}
STEPS = list(range(0, 1537, 32))
# The store that never comes back needs only enough reports to pass the bound after it went:
# trials of 768 steps (25 reports), so that the second submit finishes the sweep quickly.
SHORT = {**SHAPE, "optim": {"epochs": 48}}
SHORT_STEPS = list(range(0, 769, 32))


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres_or_skip() as server:
        yield server


def start_sweep(
    workdir: Path, url: str, name: str, label: str, shape: dict[str, Any] = SHAPE, **env: str
) -> Launched:
    spec = workdir / f"{name}.yaml"
    if not spec.exists():
        write_spec(spec, sweep_spec(name, 4, base=shape))
    args = ["submit", spec.name, "--results-db", url]
    return launch(args, workdir, label, {"GAPSWEEP_PENDING_IN_MEMORY": "8", **env})


def finished(driver: Launched, timeout: float = 600) -> tuple[int, str, str]:
    """The driver's exit code and its output (whitespace made single: rich wraps long lines)."""
    try:
        code = driver.process.wait(timeout=timeout)
    finally:
        driver.stop()
    out = " ".join(driver.out.read_text(errors="replace").split())
    return code, out, " ".join(driver.stderr().split())


def assert_every_trial_and_step_once(
    workdir: Path, url: str, name: str, steps: list[int] = STEPS
) -> None:
    keys = {t.key for t in expand(load_spec(workdir / f"{name}.yaml")).trials}
    probe = Probe(url)
    try:
        assert sql_violations(probe, name, keys, steps) == []
        bad, compared = mlflow_violations(f"sqlite:///{workdir / 'mlflow.db'}", probe, name, keys)
        assert bad == [] and compared >= len(keys)
    finally:
        probe.close()
    assert not spill_path(workdir / "runs", name).exists()


def test_postgres_away_longer_than_the_retries_mid_sweep_loses_and_doubles_nothing(
    tmp_path: Path, postgres: PrivatePostgres
) -> None:
    url = create_database(postgres, "outage")
    probe = Probe(url)
    driver = start_sweep(tmp_path, url, "outage", "driver")
    try:
        wait_for(lambda: (probe.reports("outage") or 0) >= 6, 300, "the sweep's first reports")
        before = probe.reports("outage") or 0
        probe.engine.dispose()
        stopped = time.monotonic()
        assert postgres.stop("fast").returncode == 0
        # Down until the driver has given up its retries and kept more than memory holds (the
        # spill file is there), and for OUTAGE_S at least: timed by the clock alone, a busy
        # machine's driver could still be inside its retries when the store came back.
        spill = spill_path(tmp_path / "runs", "outage")
        wait_for(lambda: spill.exists() or not driver.alive(), 300, "results kept on disk")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        assert postgres.start().returncode == 0, postgres.log_tail()
        down_s = time.monotonic() - stopped
        recorded = lambda: (probe.reports("outage") or 0) > before + 4  # noqa: E731
        wait_for(lambda: not driver.alive() or recorded(), 60, "the kept results")
    finally:
        probe.close()
        code, out, err = finished(driver)
    assert code == 0, f"{out[-3000:]}\n{err[-3000:]}"
    back = re.search(r"answers again after (\d+) s: the (\d+) results kept meanwhile", out)
    assert back is not None, out[-3000:]
    print(f"PostgreSQL down {down_s:.0f} s; {back[2]} results kept, recorded after {back[1]} s")
    assert int(back[2]) > 8  # more than memory holds: the spill file was used
    # They went in while the sweep ran, before the live table's last picture, not in the wait
    # at its end; the reports after them were recorded straight away.
    assert out.index("answers again") < out.index("┃ status ┃"), out[-3000:]
    assert_every_trial_and_step_once(tmp_path, url, "outage")


def test_a_store_that_stays_away_stops_the_sweep_and_the_next_submit_records_all(
    tmp_path: Path, postgres: PrivatePostgres
) -> None:
    url = create_database(postgres, "away")
    probe = Probe(url)
    bounds = {"GAPSWEEP_PENDING_MAX": "30", "GAPSWEEP_STORE_WAIT_S": "3"}
    driver = start_sweep(tmp_path, url, "away", "first", SHORT, **bounds)
    try:
        wait_for(lambda: (probe.reports("away") or 0) >= 4, 300, "the sweep's first reports")
        probe.close()
        assert postgres.stop("fast").returncode == 0
        code, out, err = finished(driver)
    finally:
        assert postgres.start().returncode == 0, postgres.log_tail()
    assert code == 1, f"{out[-3000:]}\n{err[-3000:]}"
    spill = spill_path(tmp_path / "runs", "away")
    assert "stopped once 30 results waited" in err and f"in order, in {spill}" in err, err
    kept = len(spill.read_text().splitlines()) - 1
    print(f"the store stayed away: {kept} results left in {spill.name}")
    assert kept >= 30

    code, out, err = finished(start_sweep(tmp_path, url, "away", "again"))
    assert code == 0, f"{out[-3000:]}\n{err[-3000:]}"
    assert f"applied the {kept} results the last driver kept" in out
    assert_every_trial_and_step_once(tmp_path, url, "away", SHORT_STEPS)
