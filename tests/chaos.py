"""What tests/test_chaos.py drives: a private PostgreSQL server it can restart, an `mlflow server`
it can kill and start again on the same port and store, drivers whose output goes to files (a
pipe nobody reads would stall a driver that runs for minutes), and the invariant checks."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.store.repository import ResultsStore
from tests.helpers import (
    ORCHESTRATOR,
    MlflowServer,
    cli_env,
    free_port,
    kill_session,
    session_pids,
    started_mlflow_server,
)

# The process title Ray gives the actor that runs a function trainable's trial.
TRIAL_WORKER = "ray::ImplicitFunc"


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on the PATH, else Debian's newest under /usr/lib."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    for initdb in reversed(candidates):
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    return None


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb in a new folder, a free loopback port),
    run as the `postgres` user where the test runs as root (initdb refuses root)."""

    bindir: Path
    root: Path
    port: int
    run_as: list[str]

    @property
    def data(self) -> Path:
        return self.root / "db"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(
        self, program: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*self.run_as, str(self.bindir / program), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def initdb(self) -> subprocess.CompletedProcess[str]:
        return self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust")

    def start(self) -> subprocess.CompletedProcess[str]:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        log = str(self.root / "server.log")
        return self._run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "90", "-o", options, "start"
        )

    def stop(self, mode: str = "fast") -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "90", "stop")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        return ""


def _owner_command() -> tuple[list[str], int | None] | str:
    """How to run the server's programs: ([], None) as ourselves, or runuser as `postgres`
    (with its uid, to own the folder) where we are root; a reason string where we cannot."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return "running as root without a `postgres` user to run initdb as"
    if runuser is None:
        return "running as root without runuser to run initdb as the postgres user"
    return [runuser, "-u", "postgres", "--"], uid


@contextlib.contextmanager
def private_postgres_or_skip() -> Iterator[PrivatePostgres]:
    """`private_postgres`, the test skipped (with the reason) where none can be started."""
    with private_postgres() as server:
        if isinstance(server, str):
            pytest.skip(server)
        yield server


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres | str]:
    """A started private cluster, or the reason it cannot be had here (for a skip). Its folder
    is a new one in the system's temporary folder: pytest's tmp_path is private to root (0700),
    which the postgres user cannot enter."""
    bindir = postgres_bin()
    if bindir is None:
        yield "needs initdb and pg_ctl: apt-get install -y postgresql (tests/run does, as root)"
        return
    owner = _owner_command()
    if isinstance(owner, str):
        yield owner
        return
    run_as, uid = owner
    root = Path(tempfile.mkdtemp(prefix="gapsweep-chaos-pg-"))
    if uid is not None:
        os.chown(root, uid, -1)
    server = PrivatePostgres(bindir, root, free_port(), run_as)
    try:
        made = server.initdb()
        started = server.start() if made.returncode == 0 else made
        if started.returncode != 0:
            why = (started.stderr or started.stdout).strip()[-500:]
            yield f"cannot run a private PostgreSQL with {bindir}: {why} {server.log_tail()}"
            return
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: PrivatePostgres, name: str) -> str:
    admin = create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = server.url(name)
    ResultsStore(url).close()  # the schema, made before any driver or probe touches it
    return url


class RestartableMlflow:
    """`started_mlflow_server` that can be killed (SIGKILL to its session) and started again on
    the same port with the same backend store and artifacts folder."""

    def __init__(self, workdir: Path, extra_args: Sequence[str] = ("--serve-artifacts",)) -> None:
        self.workdir, self.port, self.extra_args = workdir, free_port(), tuple(extra_args)
        self._stack = contextlib.ExitStack()
        self.server: MlflowServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.server is None
        self._stack = contextlib.ExitStack()
        self.server = self._stack.enter_context(
            started_mlflow_server(self.workdir, port=self.port, extra_args=self.extra_args)
        )

    def kill(self) -> None:
        if self.server is not None:
            kill_session(self.server.process.pid)  # the server and its workers, at once
            self._stack.close()
            self.server = None

    def ensure_serving(self, timeout: float = 180) -> None:
        if self.server is None:
            self.start()
        assert self.server is not None
        self.server.wait_until_serving(timeout)


@dataclass
class Launched:
    """A CLI command in a session of its own, its output in two files."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    label: str
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.err.read_text(errors="replace")
        return ""

    def tail(self, lines: int = 6) -> str:
        return " | ".join(line[:240] for line in self.stderr().strip().splitlines()[-lines:])

    def stop(self) -> int:
        """SIGKILL whatever is left of its session (its Ray) and reap it; its exit code."""
        kill_session(self.pid)
        return self.process.wait(timeout=60)


def launch(args: Sequence[str], cwd: Path, label: str, env: dict[str, str]) -> Launched:
    logs = cwd / "logs"
    logs.mkdir(exist_ok=True)
    out, err = logs / f"{label}.out", logs / f"{label}.err"
    with out.open("wb") as o, err.open("wb") as e:
        process = subprocess.Popen(
            [ORCHESTRATOR, *args], cwd=cwd, env=cli_env(**env), stdout=o, stderr=e,
            start_new_session=True,
        )  # fmt: skip
    return Launched(process, out, err, label)


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""


def trial_workers(sid: int) -> list[int]:
    """The Ray workers of a driver's session running a trial (busy ones first)."""
    found = [(pid, cmdline(pid)) for pid in session_pids(sid) if pid != sid]
    ours = [(pid, line) for pid, line in found if line.startswith(TRIAL_WORKER)]
    return [pid for pid, line in sorted(ours, key=lambda p: ".train" not in p[1])]


class Probe:
    """Reads the private store while faults hit it: every error is 'no answer now' (None)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": 5}
        )

    def scalar(self, sql: str, **params: Any) -> Any:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text(sql), params).scalar()
        except SQLAlchemyError:
            self.engine.dispose()
            return None

    def reports(self, sweep: str) -> int | None:
        """How many gap_norm values the sweep has recorded: one per report of a trial."""
        found = self.scalar(
            "SELECT count(*) FROM metrics m JOIN trials t ON t.id = m.trial_id "
            "JOIN sweeps s ON s.id = t.sweep_id WHERE s.name = :sweep AND m.name = 'gap_norm'",
            sweep=sweep,
        )
        return None if found is None else int(found)

    def lease_pid(self, sweep: str) -> int | None:
        found = self.scalar(
            "SELECT pid FROM leases WHERE sweep_name = :sweep AND released_at IS NULL",
            sweep=sweep,
        )
        return None if found is None else int(found)

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]

    def close(self) -> None:
        self.engine.dispose()


def sql_violations(probe: Probe, sweep: str, keys: set[str], steps: list[int]) -> list[str]:
    """Every trial once, completed, and each metric series with one value per step (gap_norm's
    at every expected step)."""
    where = "JOIN sweeps s ON s.id = t.sweep_id WHERE s.name = :sweep"
    found = probe.rows(f"SELECT t.key, t.status FROM trials t {where}", sweep=sweep)
    bad: list[str] = []
    per_key = Counter(key for key, _ in found)
    if set(per_key) != keys or any(n != 1 for n in per_key.values()):
        bad.append(f"{sweep}: SQL trial rows {dict(per_key)} != one per key of {sorted(keys)}")
    bad += [f"{sweep}: SQL trial {k} is {status}" for k, status in found if status != "completed"]
    doubled = probe.rows(
        "SELECT t.key, m.name, m.step, count(*) FROM metrics m JOIN trials t ON t.id = m.trial_id "
        f"{where} GROUP BY t.key, m.name, m.step HAVING count(*) > 1 ORDER BY 1, 2, 3",
        sweep=sweep,
    )
    bad += [
        f"{sweep}: SQL {k} {name} step {step} recorded {n} times" for k, name, step, n in doubled
    ]
    series = probe.rows(
        "SELECT t.key, m.step FROM metrics m JOIN trials t ON t.id = m.trial_id "
        f"{where} AND m.name = 'gap_norm' ORDER BY 1, 2",
        sweep=sweep,
    )
    for key in sorted(keys):
        got = [step for k, step in series if k == key]
        if got != steps:
            bad.append(f"{sweep}: SQL gap_norm steps of {key} are {got}, expected {steps}")
    return bad


def sql_series(probe: Probe, sweep: str) -> dict[tuple[str, str], list[int]]:
    """(trial key, metric name) -> its steps in SQL, in order."""
    series: dict[tuple[str, str], list[int]] = {}
    for key, name, step in probe.rows(
        "SELECT t.key, m.name, m.step FROM metrics m JOIN trials t ON t.id = m.trial_id "
        "JOIN sweeps s ON s.id = t.sweep_id WHERE s.name = :sweep ORDER BY 1, 2, 3",
        sweep=sweep,
    ):
        series.setdefault((key, name), []).append(int(step))
    return series


def mlflow_violations(
    tracking_uri: str, probe: Probe, sweep: str, keys: set[str]
) -> tuple[list[str], int]:
    """One parent run (the one the store names), closed; one child run of it per trial (the one
    the store names), FINISHED; every metric history in MLflow with each step once, the same
    steps as in SQL. Also how many metric histories were compared."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        return [f"{sweep}: no MLflow experiment"], 0
    runs = client.search_runs([experiment.experiment_id], max_results=10000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    bad = [f"{sweep}: MLflow run {r.info.run_id} ({r.data.tags.get('gapsweep.trial_key')}) is "
           f"{r.info.status}" for r in children if r.info.status != "FINISHED"]  # fmt: skip
    if [p.info.status for p in parents] != ["FINISHED"]:
        bad.append(
            f"{sweep}: MLflow parent runs {[(p.info.run_id, p.info.status) for p in parents]}"
        )
    per_key = Counter(r.data.tags.get("gapsweep.trial_key") for r in children)
    if set(per_key) != keys or any(n != 1 for n in per_key.values()):
        bad.append(f"{sweep}: MLflow child runs per trial key {dict(per_key)}")
    parent_id = probe.rows("SELECT mlflow_run_id FROM sweeps WHERE name = :sweep", sweep=sweep)
    if [p.info.run_id for p in parents] != [parent_id[0][0]]:
        bad.append(f"{sweep}: MLflow parent runs are not the store's {parent_id[0][0]}")
    bad += [f"{sweep}: MLflow run {r.info.run_id} is a child of {r.data.tags['mlflow.parentRunId']}"
            for r in children if r.data.tags["mlflow.parentRunId"] != parent_id[0][0]]  # fmt: skip
    stored = dict(probe.rows(
        "SELECT t.key, t.mlflow_run_id FROM trials t JOIN sweeps s ON s.id = t.sweep_id "
        "WHERE s.name = :sweep", sweep=sweep,
    ))  # fmt: skip
    if {r.info.run_id for r in children} != set(stored.values()):
        bad.append(f"{sweep}: MLflow child runs {sorted(r.info.run_id for r in children)} are not "
                   f"the store's {sorted(map(str, stored.values()))}")  # fmt: skip
    wrong, compared = _history_violations(client, sweep, children, sql_series(probe, sweep))
    return bad + wrong, compared


def _history_violations(
    client: Any, sweep: str, children: list[Any], sql: dict[tuple[str, str], list[int]]
) -> tuple[list[str], int]:
    bad: list[str] = []
    compared = 0
    for run in children:
        key = run.data.tags.get("gapsweep.trial_key")
        names = set(run.data.metrics) | {name for k, name in sql if k == key}
        for name in sorted(names):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, name))
            compared += 1
            twice = sorted(s for s, n in Counter(steps).items() if n > 1)
            if twice:
                bad.append(f"{sweep}: MLflow {key} {name} has steps {twice} more than once")
            elif steps != sql.get((key, name), []):
                bad.append(
                    f"{sweep}: MLflow {key} {name} steps {steps} != SQL {sql.get((key, name))}"
                )
    return bad, compared
