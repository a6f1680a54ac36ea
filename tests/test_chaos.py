"""Issue 16's chaos test: a sweep with its results store in a private PostgreSQL server and MLflow
as a real `mlflow server`, hit by a seeded schedule of real faults at random points:

- driver-kill: SIGKILL to the driver's session (the driver and its local Ray);
- worker-kill: SIGKILL to a Ray worker running a trial (Tune retries it from its checkpoint);
- mlflow-restart: the MLflow server's session SIGKILLed, then started again on the same port
  and store;
- postgres-restart: the results store's server stopped (`pg_ctl stop`, `-m fast` or, as if it
  crashed, `-m immediate`) and started again;
- second-driver: a second `submit` of the sweep, which must be refused while the first lives,
  and may take over only once the first is dead.

Each strikes after a seeded number of new reports (0: at once, even while a driver starts) and a
seeded delay. Whenever the driver exits (a fault or any other reason) the sweep is submitted
again; a sweep that completes before the schedule is done is followed by a new one (a new round).
Then every round is submitted until it completes, `orchestrator sync` runs, and the invariant is
checked: every trial completed once in SQL, one value per step in every series (SQL and MLflow), one
FINISHED MLflow child run per trial (the one the store names), the parent run FINISHED.

GAPSWEEP_CHAOS_SEED (16) draws the schedule, GAPSWEEP_CHAOS_FAULTS (8; ~5 minutes on 2 busy
cores) is its length and GAPSWEEP_CHAOS_BUDGET_S (600, or 50 per fault past 12) bounds the test's
time: faults stop at 60% of it, and a schedule cut short fails the test after the invariant is
checked. The full run is GAPSWEEP_CHAOS_FAULTS=30 (~13 minutes). The seed, the schedule and
what happened are printed (pytest -s) and are in every assertion's message."""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.plan import expand
from orchestrator.spec import load_spec
from tests.chaos import (
    Launched,
    PrivatePostgres,
    Probe,
    RestartableMlflow,
    cmdline,
    create_database,
    launch,
    mlflow_violations,
    private_postgres_or_skip,
    sql_violations,
    trial_workers,
)
from tests.conftest import TINY_BASE
from tests.helpers import ORCHESTRATOR, cli_env, write_spec

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("GAPSWEEP_CHAOS_SEED", "16"))
FAULTS = int(os.environ.get("GAPSWEEP_CHAOS_FAULTS", "8"))
# The test's bound: 10 minutes, or 50 s a fault for longer schedules (the full run, 30: 25 min).
BUDGET_S = float(os.environ.get("GAPSWEEP_CHAOS_BUDGET_S", max(600, 50 * FAULTS)))
KINDS = ("driver-kill", "worker-kill", "mlflow-restart", "postgres-restart", "second-driver")
# Eight trials of 384 steps (a report every 8: 49 values of each metric), a few seconds each.
SHAPE = {"data": {"n_train": 128}, "optim": {"epochs": 48}, "eval": {"every_steps": 8}}
STEPS = list(range(0, 385, 8))
SEEDS = 8
REFUSED = "already being run by process"
PROGRESS_TIMEOUT_S = 240  # a live driver that records nothing for this long has stalled


@dataclass(frozen=True)
class Fault:
    kind: str
    # When it strikes: once the sweep has recorded this many gap_norm values since the last
    # fault (0: at once, which may be while a resubmitted driver is still starting), and then
    # `delay_s` seconds more.
    after_reports: int
    delay_s: float
    pause_s: float  # how long MLflow or PostgreSQL stays down
    pg_mode: str  # postgres-restart: pg_ctl's shutdown mode (immediate: as if it crashed)

    def __str__(self) -> str:
        what = f"{self.kind}(+{self.after_reports} reports, +{self.delay_s}s"
        if self.kind in ("mlflow-restart", "postgres-restart"):
            what += f", down {self.pause_s}s"
        return what + (f", -m {self.pg_mode})" if self.kind == "postgres-restart" else ")")


def draw_schedule(seed: int, count: int) -> list[Fault]:
    """`count` faults: the kinds in seeded shuffles of all five (every kind comes up in any
    five in a row), each after a seeded amount of progress and time, with a seeded outage."""
    rng = random.Random(seed)
    kinds: list[str] = []
    while len(kinds) < count:
        kinds += rng.sample(KINDS, len(KINDS))
    return [
        Fault(
            kind,
            after_reports=rng.randint(0, 12),
            delay_s=round(rng.uniform(0.0, 6.0), 1),
            pause_s=round(rng.uniform(0.0, 3.0), 1),
            pg_mode=rng.choice(("fast", "immediate")),
        )
        for kind in kinds[:count]
    ]


def spec(name: str, max_failures: int) -> dict[str, Any]:
    base = copy.deepcopy(TINY_BASE)
    for section, values in SHAPE.items():
        base[section] = {**base[section], **values}
    return {
        "name": name,
        "base": base,
        "parameters": {"seed": {"grid": list(range(SEEDS))}},
        "metric": {"name": "gap_norm", "mode": "min"},
        "max_failures": max_failures,  # every worker kill costs one of a trial's retries
    }


class Chaos:
    def __init__(self, workdir: Path, pg: PrivatePostgres, db_url: str, mlflow: RestartableMlflow):
        self.workdir, self.pg, self.mlflow = workdir, pg, mlflow
        self.env = {"ORCHESTRATOR_RESULTS_DB": db_url, "MLFLOW_TRACKING_URI": mlflow.url}
        self.probe = Probe(db_url)
        self.schedule = draw_schedule(SEED, FAULTS)
        self.pick = random.Random(SEED + 1)  # which busy worker a worker-kill hits
        self.t0 = time.monotonic()
        self.rounds: list[str] = []
        self.driver: Launched | None = None
        self.launched: list[Launched] = []
        self.injected = 0
        self.events: list[str] = []
        self.violations: list[str] = []

    # -- bookkeeping -------------------------------------------------------------------------

    def say(self, message: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {message}"
        print(f"chaos {line}", flush=True)
        self.events.append(line)

    def violated(self, message: str) -> None:
        self.say(f"VIOLATION: {message}")
        self.violations.append(message)

    def summary(self) -> str:
        return (
            f"seed={SEED} faults injected={self.injected} of {FAULTS} in "
            f"{time.monotonic() - self.t0:.0f} s; rounds {self.rounds}; schedule "
            f"{[str(f) for f in self.schedule]}\nviolations:\n  "
            + "\n  ".join(self.violations)
            + "\nevents:\n  "
            + "\n  ".join(self.events)
        )

    @property
    def sweep(self) -> str:
        return self.rounds[-1]

    def spec_path(self, sweep: str) -> Path:
        return self.workdir / f"{sweep}.yaml"

    # -- drivers -----------------------------------------------------------------------------

    def start(self, label: str) -> Launched:
        args = ["submit", self.spec_path(self.sweep).name]
        started = launch(args, self.workdir, f"{len(self.launched):03d}-{label}", self.env)
        self.launched.append(started)
        return started

    def submit(self) -> None:
        self.driver = self.start("submit")
        self.say(f"submitted {self.sweep}: driver pid {self.driver.pid}")

    def new_round(self) -> None:
        self.rounds.append(f"chaos-{SEED}-r{len(self.rounds) + 1}")
        write_spec(self.spec_path(self.sweep), spec(self.sweep, min(100, FAULTS + 5)))
        self.submit()

    def driver_ended(self, why: str) -> None:
        """The driver exited (or was killed): reap its session; submit again unless the sweep
        completed."""
        assert self.driver is not None
        rc = self.driver.stop()
        self.say(f"driver {self.driver.pid} {why}: exit {rc}; {self.driver.tail(3)}")
        self.driver = None
        if rc != 0:
            time.sleep(1)
            self.submit()

    def wait_progress(self, reports: int, delay_s: float) -> bool:
        """Wait until the sweep records `reports` more values, then `delay_s` seconds, while its
        driver lives; False when the driver exited first or stalled."""
        assert self.driver is not None
        if not self._progress(reports):
            return False
        until = time.monotonic() + delay_s
        while time.monotonic() < until:
            if not self.driver.alive():
                return False
            time.sleep(0.1)
        return self.driver.alive()

    def _progress(self, reports: int) -> bool:
        assert self.driver is not None
        baseline: int | None = None
        deadline = time.monotonic() + PROGRESS_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.driver.alive():
                return False
            count = self.probe.reports(self.sweep)
            baseline = count if baseline is None else baseline
            if count is not None and baseline is not None and count >= baseline + reports:
                return True
            time.sleep(0.5)
        self.violated(f"driver {self.driver.pid} recorded nothing for {PROGRESS_TIMEOUT_S} s")
        return False

    # -- faults ------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> bool:
        assert self.driver is not None
        if fault.kind == "driver-kill":
            self.driver_ended("SIGKILLed with its session")
            return True
        if fault.kind == "worker-kill":
            return self.kill_worker()
        if fault.kind == "mlflow-restart":
            self.mlflow.kill()
            self.say(f"mlflow server killed; down for {fault.pause_s} s")
            time.sleep(fault.pause_s)
            self.mlflow.ensure_serving()
            self.say("mlflow server serving again")
            return True
        if fault.kind == "postgres-restart":
            return self.restart_postgres(fault.pause_s, fault.pg_mode)
        return self.second_driver()

    def kill_worker(self) -> bool:
        assert self.driver is not None
        deadline = time.monotonic() + 60
        while self.driver.alive() and time.monotonic() < deadline:
            workers = trial_workers(self.driver.pid)
            if workers:
                busy = [p for p in workers if ".train" in cmdline(p)] or workers
                victim = self.pick.choice(busy)
                title = cmdline(victim).strip()
                os.kill(victim, signal.SIGKILL)
                self.say(f"SIGKILLed trial worker {victim} ({title}) of driver {self.driver.pid}")
                return True
            time.sleep(0.5)
        self.say("no trial worker found to kill; the fault is drawn again later")
        return False

    def restart_postgres(self, pause_s: float, mode: str) -> bool:
        stopped = self.pg.stop(mode)
        self.say(f"postgres stopped -m {mode} (exit {stopped.returncode}); down for {pause_s} s")
        time.sleep(pause_s)
        started = self.pg.start()
        assert started.returncode == 0, f"postgres did not start again: {started.stderr}"
        self.say("postgres started again")
        return True

    def second_driver(self) -> bool:
        first = self.driver
        assert first is not None
        # Only a first driver that held the lease already must win; one still starting races
        # the second for it, and either may be refused.
        held = self.probe.lease_pid(self.sweep) == first.pid
        second = self.start("second")
        self.say(f"second driver {second.pid} started beside driver {first.pid} (holder: {held})")
        flagged, deadline = not held, time.monotonic() + 300
        while time.monotonic() < deadline:
            if not second.alive():
                self.second_exited(first, second)
                return True
            if not first.alive():
                rc = first.stop()
                self.say(f"driver {first.pid} exited {rc} ({first.tail(2)}); second {second.pid} "
                         "goes on as the driver")  # fmt: skip
                if held and rc == 1 and REFUSED in first.stderr():
                    self.violated(f"driver {first.pid}, which held the lease, was refused")
                self.driver = second
                return True
            if not flagged and self.probe.lease_pid(self.sweep) == second.pid and first.alive():
                flagged = True
                self.violated(f"second driver {second.pid} holds the lease of {self.sweep} while "
                              f"driver {first.pid} lives")  # fmt: skip
            time.sleep(0.5)
        self.violated(f"second driver {second.pid} neither refused nor took over in 300 s")
        second.stop()
        return True

    def second_exited(self, first: Launched, second: Launched) -> None:
        rc, stderr = second.stop(), second.stderr()
        if rc == 1 and REFUSED in stderr:
            self.say(f"second driver {second.pid} refused: {second.tail(1)[:160]}")
        elif first.alive():
            self.violated(f"second driver {second.pid} beside live driver {first.pid} exited "
                          f"{rc} without the refusal: {second.tail()}")  # fmt: skip
        else:
            self.say(f"second driver {second.pid} (its first had died) exited {rc}")

    # -- the run -----------------------------------------------------------------------------

    def run_faults(self) -> None:
        inject_until = self.t0 + 0.6 * BUDGET_S
        self.new_round()
        while self.injected < len(self.schedule) and time.monotonic() < inject_until:
            fault = self.schedule[self.injected]
            if self.driver is None:
                self.new_round()  # the last sweep completed; faults go on in a new one
            assert self.driver is not None
            if not self.wait_progress(fault.after_reports, fault.delay_s):
                self.driver_ended("exited")
                continue
            self.say(f"fault {self.injected + 1}/{FAULTS}: {fault}")
            if self.inject(fault):
                self.injected += 1

    def finish(self) -> None:
        """Submit again until the last round completes, within the budget."""
        attempts = 0
        while self.driver is not None:
            left = self.t0 + BUDGET_S - 60 - time.monotonic()
            try:
                self.driver.process.wait(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                self.violated(f"{self.sweep} did not complete within the {BUDGET_S:.0f} s budget")
                self.driver.stop()
                self.driver = None
                return
            attempts += 1
            if attempts > 5:
                self.violated(f"{self.sweep} did not complete in 5 submits after the faults")
                self.driver.stop()
                self.driver = None
                return
            self.mlflow.ensure_serving()
            self.driver_ended("exited after the faults")

    def check(self) -> None:
        self.mlflow.ensure_serving()
        for sweep in self.rounds:
            synced = subprocess.run(
                [ORCHESTRATOR, "sync", sweep], cwd=self.workdir, env=cli_env(**self.env),
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            if synced.returncode != 0:
                self.violated(f"orchestrator sync {sweep} exited {synced.returncode}: "
                              f"{synced.stderr.strip()[-600:]}")  # fmt: skip
            keys = {t.key for t in expand(load_spec(self.spec_path(sweep))).trials}
            problems = sql_violations(self.probe, sweep, keys, STEPS)
            wrong, compared = mlflow_violations(self.mlflow.url, self.probe, sweep, keys)
            for problem in problems + wrong:
                self.violated(problem)
            self.say(f"checked {sweep}: {len(keys)} trials, {compared} MLflow metric histories")

    def close(self) -> None:
        for started in self.launched:
            if started.process.returncode is None or started.alive():
                started.stop()
        self.mlflow.kill()
        self.probe.close()


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres_or_skip() as server:
        yield server


def test_chaos_loses_nothing_and_doubles_nothing(tmp_path: Path, postgres: PrivatePostgres) -> None:
    mlflow_dir = tmp_path / "mlflow"
    mlflow_dir.mkdir()
    db_url = create_database(postgres, "chaos")
    mlflow = RestartableMlflow(mlflow_dir)
    mlflow.start()
    chaos = Chaos(tmp_path, postgres, db_url, mlflow)
    chaos.say(f"seed {SEED}, {FAULTS} faults: {[str(f) for f in chaos.schedule]}")
    try:
        mlflow.ensure_serving()
        chaos.run_faults()
        chaos.finish()
        chaos.check()
    finally:
        chaos.close()
    chaos.say(f"done: {chaos.injected} faults, {len(chaos.violations)} violations")
    assert not chaos.violations, chaos.summary()
    assert chaos.injected == FAULTS, (
        f"the budget ran out before the schedule did: {chaos.summary()}"
    )
