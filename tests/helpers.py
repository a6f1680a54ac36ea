"""Driving the real `orchestrator` CLI in subprocesses, and stopping exactly what a test started."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.store.views import TrialView
from tests.conftest import TINY_BASE

ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
SERVICE_ENV = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "ORCHESTRATOR_RESULTS_DB")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    return {**env, "COLUMNS": "200", **extra}


def orchestrator(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORCHESTRATOR, *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_orchestrator(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    """Start the CLI in a session of its own, so that everything it starts can be found again."""
    return subprocess.Popen(
        [ORCHESTRATOR, *args],
        cwd=cwd,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # stat fields after the name: state ppid pgrp session
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, sig: int = signal.SIGKILL) -> None:
    """Signal every process of the session the test created (the driver and what it spawned)."""
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def mlflow_runs(tracking_uri: str, experiment: str) -> tuple[Any, list[Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return client, client.search_runs([found.experiment_id])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serves_health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class MlflowServer:
    """An `mlflow server` that `started_mlflow_server` started: it may not answer yet."""

    process: subprocess.Popen[bytes]
    url: str
    artifacts: Path
    log: Path

    def wait_until_serving(self, timeout: float = 120) -> None:
        """Wait until it answers; fail at once, with the end of its log, if it exits."""
        exited = self.process.poll
        wait_for(lambda: exited() is not None or serves_health(self.url), timeout, "mlflow server")
        if exited() is not None:
            tail = self.log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"mlflow server exited with {self.process.returncode}:\n{tail}")


@contextlib.contextmanager
def started_mlflow_server(
    workdir: Path,
    *,
    port: int | None = None,
    backend_uri: str | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[MlflowServer]:
    """A real `mlflow server` on a loopback port (`port`, else a free one), yielded as soon as it
    is started, so that a test can start other services while it comes up (it takes ~20 s). Its
    store is SQLite in `workdir` unless `backend_uri` names another, its artifacts go to
    workdir/mlartifacts, and `extra_args` go to its command line; started again with the same
    `workdir` and `port`, it serves the same store at the same URL. Its output is appended to
    workdir/mlflow-server.log. At the end it stops the session the server runs in (it and its
    workers)."""
    port = free_port() if port is None else port
    url, log = f"http://127.0.0.1:{port}", workdir / "mlflow-server.log"
    artifacts = workdir / "mlartifacts"
    backend = f"sqlite:///{workdir / 'mlflow.db'}" if backend_uri is None else backend_uri
    cmd = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *extra_args,
    ]  # fmt: skip
    # Without its job runner: seven fewer processes (huey consumers) that a test never uses.
    env = cli_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with log.open("ab") as out:
        server = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield MlflowServer(server, url, artifacts, log)
    finally:
        kill_session(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
        kill_session(server.pid)  # whatever of its session has not exited by now
        server.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    """`started_mlflow_server`, yielding its URL once it answers."""
    with started_mlflow_server(workdir) as server:
        server.wait_until_serving()
        yield server.url


SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
# Shipped specs that need the user's own model and data (`--set` of their paths): checked with a
# tiny CLIP made by the test in tests/test_clip_pretrained.py, left out of the checks that load
# every shipped spec as it is.
NEEDS_YOUR_FILES = ("clip_measure.yaml", "clip_temperature.yaml")


def self_contained_sweeps() -> list[Path]:
    return sorted(p for p in SWEEPS.glob("*.yaml") if p.name not in NEEDS_YOUR_FILES)


def missing_program(program: str, package: str | None = None) -> str | None:
    """Why a test that drives a Debian program cannot run here (with the apt line that brings
    it, which tests/run runs as root), or None where it is installed."""
    if shutil.which(program) is not None:
        return None
    return f"needs {program}: apt-get install -y {package or program} (tests/run does, as root)"


def needs(program: str, package: str | None = None) -> pytest.MarkDecorator:
    """Skip the test, with the reason in pytest's summary, where `program` is missing."""
    reason = missing_program(program, package)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


NEEDS_ESPEAK = needs("espeak-ng")


def missing_postgres() -> str | None:
    """Why the tests of the PostgreSQL results store cannot run here, or None where the server
    of GAPSWEEP_TEST_POSTGRES_URL answers (tests/run finds or starts one)."""
    from urllib.parse import urlsplit

    from orchestrator.store.testing import POSTGRES_ADMIN_URL

    url = urlsplit(POSTGRES_ADMIN_URL.replace("+psycopg", ""))
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), 2).close()
    except OSError:
        return (
            f"needs a PostgreSQL server at {url.hostname}:{url.port or 5432}: tests/run starts "
            "one (apt-get install -y postgresql), or set GAPSWEEP_TEST_POSTGRES_URL"
        )
    return None


_POSTGRES_MISSING = missing_postgres()  # asked once: each call may wait on a connection
NEEDS_POSTGRES = pytest.mark.skipif(_POSTGRES_MISSING is not None, reason=_POSTGRES_MISSING or "")


def store_url(results_db: str | Path) -> str:
    """A results store URL, or a working folder whose results.db (the CLI's default) is meant."""
    return f"sqlite:///{results_db / 'results.db'}" if isinstance(results_db, Path) else results_db


def stored(results_db: str | Path, sweep: str) -> list[TrialView]:
    """The sweep's trials as stored (none yet: an empty list; a missing SQLite file is not made)."""
    from orchestrator.store.engine import missing_sqlite_file
    from orchestrator.store.repository import ResultsStore

    url = store_url(results_db)
    if missing_sqlite_file(url):
        return []
    with ResultsStore(url) as store:
        return store.trials(sweep) if store.get_sweep(sweep) else []


def sql_steps(results_db: str | Path, sweep: str, key: str, metric: str = "gap_norm") -> list[int]:
    """The steps of one trial's metric series in the results store, in order, repeats kept."""
    from orchestrator.store.repository import ResultsStore

    with ResultsStore(store_url(results_db)) as store:
        return [step for step, _ in store.metric_series(sweep, key, metric)]


# Trials long enough (tens of seconds on 2 busy cores) to be interrupted mid-way: 384 steps,
# a report every 16.
LONG = {"data": {"n_train": 256}, "optim": {"epochs": 24}, "eval": {"every_steps": 16}}


def sweep_spec(
    name: str, seeds: int = 2, base: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A seed grid of tiny trials; `base`'s sections are merged into TINY_BASE's, `overrides`
    are top-level spec keys (max_failures, ...)."""
    merged = copy.deepcopy(TINY_BASE)
    for section, values in (base or {}).items():
        merged[section] = {**merged.get(section, {}), **values}
    return {
        "name": name,
        "base": merged,
        "parameters": {"seed": {"grid": list(range(seeds))}},
        "metric": {"name": "gap_norm", "mode": "min"},
        **overrides,
    }


def long_sweep(name: str, seeds: int = 2, **overrides: Any) -> dict[str, Any]:
    """`sweep_spec` with trials long enough to be interrupted mid-way (LONG)."""
    return sweep_spec(name, seeds, base=LONG, **overrides)


def submit_and_kill_past(workdir: Path, results_db: str, sweep: str, step: int) -> dict[str, Any]:
    """Submit `s.yaml` and SIGKILL the driver (with every Ray process it started) once a trial
    of `sweep` passed `step`; the step of the last checkpoint the store knows of for each trial
    left running (None: none yet). The store records a report and then its checkpoint, so a
    kill between the two leaves that checkpoint one report behind: the step is read from it."""
    from trainers.checkpoint import load_state

    driver = start_orchestrator("submit", "s.yaml", cwd=workdir, ORCHESTRATOR_RESULTS_DB=results_db)
    try:
        wait_for(
            lambda: any((t.last_step or 0) >= step for t in stored(results_db, sweep)),
            300,
            f"a trial to pass step {step}",
        )
    finally:
        kill_session(driver.pid)
    driver.wait(timeout=30)
    return {
        t.key: None if t.checkpoint_path is None else load_state(Path(t.checkpoint_path)).step
        for t in stored(results_db, sweep)
        if t.status == "running"
    }
