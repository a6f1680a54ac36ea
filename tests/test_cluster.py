"""The topology of docker/compose.yaml, built from real processes on loopback.

PostgreSQL is the machine's server (a fresh database per use, dropped afterwards); an `mlflow
server` with a PostgreSQL backend and the artifact proxy; a Ray head and a Ray worker node, each a
`ray start --block` with its own temp dir, free ports, and token authentication with one shared
token. Sweeps are submitted with `--address`, as a user of the cluster would.

Each process is started in a session of its own, so that everything it spawns shares its process
group: stopping it (or killing a node mid-sweep) signals that group and the process tree below it,
never anything by name and never Ray's stop-everything command, which would stop every Ray here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import InputError
from orchestrator.store.repository import ResultsStore
from orchestrator.store.testing import temporary_postgres_database
from orchestrator.store.views import TrialView
from tests.conftest import TINY_BASE
from tests.helpers import NEEDS_POSTGRES, free_port, started_mlflow_server

pytestmark = [pytest.mark.slow, NEEDS_POSTGRES]

BIN = Path(sys.executable).parent
RAY, ORCHESTRATOR = (str(BIN / name) for name in ("ray", "orchestrator"))
TOKEN = secrets.token_hex(32)
# Ray replaces 127.0.0.1 and localhost by the machine's routable address; any other address of
# the loopback range stays as given, so the whole cluster talks over loopback only.
NODE_IP = "127.0.0.2"
# Notice a dead node in about 3 s instead of Ray's default of about 30 s.
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
# Trials of a few seconds each, long enough to kill a node in the middle of one.
LONG_BASE = {
    **TINY_BASE,
    "data": {**TINY_BASE["data"], "n_train": 256},
    "optim": {**TINY_BASE["optim"], "epochs": 20},
    "eval": {"every_steps": 16},
}


# -- processes ---------------------------------------------------------------------------------


def cluster_env(**extra: str) -> dict[str, str]:
    """This environment with the cluster's token, and none of the developer's service settings."""
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "ORCHESTRATOR_RESULTS_DB", "RAY_AUTH_TOKEN_PATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, **extra}


def start_session(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `cmd` as the leader of a new session (and so of a process group of its own)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def process_table() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process, read from /proc."""
    table = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name in parentheses may hold spaces; the fields after it do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table.append((int(stat.parent.name), int(fields[1]), int(fields[2])))
    return table


def session_processes(process: subprocess.Popen[bytes]) -> set[int]:
    """The processes of a session we started: its process group and, while the leader lives,
    the tree below it (a child may have left the group).

    The kernel does not reuse a pid while a process group of that id has members, so the group
    is safe to look up even after the leader was reaped; the tree only before.
    """
    table = process_table()
    found = {pid for pid, _, group in table if group == process.pid}
    if process.poll() is None:
        children: dict[int, list[int]] = {}
        for pid, parent, _ in table:
            children.setdefault(parent, []).append(pid)
        todo = [process.pid]
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def stop_session(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal every process of a session we started, and reap its leader."""
    for pid in session_processes(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        stop_session(process, signal.SIGKILL)


def wait_until(
    what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait for `ready()`; fail at once, with the end of the log, if the process exits."""
    deadline = time.monotonic() + 150
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{what} is not up (exit code {process.poll()}):\n{tail}")
        time.sleep(0.5)


# -- services ----------------------------------------------------------------------------------


@dataclass
class RayNode:
    process: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path
    node_id: str = ""

    def stop(self) -> None:
        # A test node holds nothing worth a graceful shutdown, and `ray start --block` can take
        # many seconds to pass a SIGTERM on.
        stop_session(self.process, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_ray_node(workdir: Path, name: str, args: list[str], env: dict[str, str]) -> RayNode:
    # Unix socket paths are limited to 107 bytes and Ray's live under the temp dir: keep it short.
    temp_dir = Path(tempfile.mkdtemp(prefix=f"gs{name[0]}", dir="/tmp"))
    log = workdir / f"ray-{name}.log"
    ports = [
        "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
    ]  # fmt: skip
    cmd = [
        RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", NODE_IP,
        "--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(100 * 2**20),
        "--temp-dir", str(temp_dir), "--min-worker-port", "0", "--max-worker-port", "0",
        *(arg for flag in ports for arg in (flag, str(free_port()))), *args,
    ]  # fmt: skip
    node = RayNode(start_session(cmd, log, env), temp_dir, log)
    try:
        wait_until(f"Ray {name}", lambda: "runtime started" in log.read_text(), node.process, log)
        node.node_id = raylet_node_id(temp_dir)
    except BaseException:
        node.stop()
        raise
    return node


def raylet_node_id(temp_dir: Path) -> str:
    """The node id the node's raylet logged at start, in the node's own temp dir."""
    raylet_log = temp_dir / "session_latest" / "logs" / "raylet.out"
    match = re.search(r"Setting node ID node_id=([0-9a-f]+)", raylet_log.read_text())
    assert match, f"no node id in {raylet_log}"
    return match.group(1)


@dataclass(frozen=True)
class Cluster:
    workdir: Path
    mlflow_uri: str
    artifacts: Path
    head: RayNode
    address: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The MLflow server and the Ray head, started side by side (MLflow takes ~20 s)."""
    workdir = tmp_path_factory.mktemp("cluster")
    with (
        temporary_postgres_database() as backend,
        # --serve-artifacts: clients upload through the server's proxy, as in docker/compose.yaml.
        started_mlflow_server(
            workdir, backend_uri=backend, extra_args=["--serve-artifacts"]
        ) as mlflow,
    ):
        gcs_port = free_port()
        head_args = ["--head", "--port", str(gcs_port), "--include-dashboard", "false"]
        head = start_ray_node(workdir, "head", head_args, cluster_env(**FAST_FAILURE_DETECTION))
        try:
            mlflow.wait_until_serving(timeout=150)
            yield Cluster(workdir, mlflow.url, mlflow.artifacts, head, f"{NODE_IP}:{gcs_port}")
        finally:
            head.stop()


@pytest.fixture
def ray_worker(cluster: Cluster) -> Iterator[RayNode]:
    """A worker node of one test's own, which that test may kill."""
    args = ["--address", cluster.address]
    worker = start_ray_node(cluster.workdir, "worker", args, cluster_env())
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def results_db() -> Iterator[str]:
    with temporary_postgres_database() as url:
        yield url


# -- helpers of the tests ----------------------------------------------------------------------


def write_spec(workdir: Path, name: str, base: dict[str, Any], **extra: Any) -> Path:
    spec = {
        "name": name,
        "base": base,
        "parameters": {"seed": {"grid": [0, 1, 2, 3]}},
        "metric": {"name": "gap_norm", "mode": "min"},
        "resources": {"cpu": 1, "gpu": 0},
        **extra,
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def submit_command(cluster: Cluster, spec: Path, results_db: str) -> list[str]:
    return [
        ORCHESTRATOR, "submit", str(spec), "--address", cluster.address,
        "--mlflow-uri", cluster.mlflow_uri, "--results-db", results_db,
        "--storage", str(cluster.workdir / "runs"),
    ]  # fmt: skip


def results_json(cluster: Cluster, sweep: str, results_db: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [ORCHESTRATOR, "results", sweep, "--format", "json", "--results-db", results_db],
        cwd=cluster.workdir,
        env=cluster_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


def mlflow_runs(cluster: Cluster, sweep: str) -> tuple[Any, list[Any], list[Any]]:
    """The MLflow client of the server, the sweep's parent runs and its child runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cluster.mlflow_uri)
    experiment = client.get_experiment_by_name(sweep)
    assert experiment is not None, f"no MLflow experiment {sweep} on the server"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def stored_trials(results_db: str, sweep: str) -> list[TrialView]:
    store = ResultsStore(results_db)
    try:
        return store.trials(sweep)
    finally:
        store.close()


def run_submit(cluster: Cluster, spec: Path, results_db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        submit_command(cluster, spec, results_db),
        cwd=cluster.workdir,
        env=cluster_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=600,
    )


# -- the tests ---------------------------------------------------------------------------------


def preflight(cluster: Cluster, results_db: str, token: str) -> subprocess.CompletedProcess[str]:
    """`check_services` in a driver process of its own: Ray caches the token per process."""
    code = "import sys; from orchestrator.preflight import check_services as c; c(*sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, cluster.mlflow_uri, results_db, cluster.address],
        env=cluster_env(RAY_AUTH_TOKEN=token),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_preflight_passes_on_the_cluster_and_names_a_wrong_token(
    cluster: Cluster, results_db: str
) -> None:
    ok = preflight(cluster, results_db, TOKEN)
    assert ok.returncode == 0, ok.stderr
    wrong = preflight(cluster, results_db, secrets.token_hex(32))
    assert wrong.returncode != 0
    assert f"Ray cluster at {cluster.address} refused this driver's token" in wrong.stderr


def test_sweep_runs_on_both_nodes_and_lands_on_the_servers(
    cluster: Cluster, ray_worker: RayNode, results_db: str
) -> None:
    spec = write_spec(cluster.workdir, "spread", TINY_BASE)
    result = run_submit(cluster, spec, results_db)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]

    # Two trials at a time on two 1-CPU nodes: the nodes had to share the sweep.
    records = results_json(cluster, "spread", results_db)
    assert [r["status"] for r in records] == ["completed"] * 4
    assert {r["node"] for r in records} == {cluster.head.node_id, ray_worker.node_id}
    assert all(r["host"] for r in records)

    # The rows are in PostgreSQL (the store the CLI read is the server's).
    rows = stored_trials(results_db, "spread")
    assert sorted(t.key for t in rows) == sorted(r["key"] for r in records)

    # Runs and artifacts are on the MLflow server; the artifact went through its proxy.
    client, parents, children = mlflow_runs(cluster, "spread")
    assert len(parents) == 1 and len(children) == 4
    assert {c.info.run_id for c in children} == {r["mlflow_run_id"] for r in records}
    assert all(c.info.status == "FINISHED" for c in children)
    parent = parents[0]
    assert "spec.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    served = Path(client.download_artifacts(parent.info.run_id, "spec.yaml", str(cluster.workdir)))
    assert yaml.safe_load(served.read_text())["name"] == "spread"
    assert list(cluster.artifacts.rglob("spec.yaml")), "spec.yaml is not in the server's store"


def wait_for_a_trial_on(
    node: RayNode, sweep: str, store: ResultsStore, submit: subprocess.Popen[bytes], log: Path
) -> list[str]:
    """Keys of the trials that have reported from `node` and are still running there."""
    found: list[str] = []

    def some_found() -> bool:
        with contextlib.suppress(InputError):  # the sweep is not registered yet
            found[:] = [
                t.key
                for t in store.trials(sweep)
                if t.status == "running" and t.node_id == node.node_id
            ]
        return bool(found)

    wait_until(f"a trial on node {node.node_id[:8]}", some_found, submit, log)
    return found


def test_a_killed_worker_node_loses_no_trial_and_duplicates_nothing(
    cluster: Cluster, ray_worker: RayNode, results_db: str
) -> None:
    spec = write_spec(cluster.workdir, "lost", LONG_BASE, max_failures=3)
    # The store's schema is made by the product itself before the test starts reading it.
    store = ResultsStore(results_db)
    log = cluster.workdir / "submit-lost.log"
    submit = start_session(submit_command(cluster, spec, results_db), log, cluster_env())
    try:
        lost = wait_for_a_trial_on(ray_worker, "lost", store, submit, log)
        ray_worker.stop()
        submit.wait(timeout=500)
    finally:
        stop_session(submit)
        store.close()
    output = log.read_text(errors="replace")
    assert submit.returncode == 0, output[-6000:]

    records = {r["key"]: r for r in results_json(cluster, "lost", results_db)}
    assert len(records) == 4
    assert {r["status"] for r in records.values()} == {"completed"}
    for key in lost:  # retried, and finished on the node that was left
        assert records[key]["attempts"] > 1, records[key]
        assert records[key]["node"] == cluster.head.node_id

    # One MLflow child run per trial, reused by the retry rather than duplicated.
    _, parents, children = mlflow_runs(cluster, "lost")
    assert len(parents) == 1
    assert sorted(c.data.tags["gapsweep.trial_key"] for c in children) == sorted(records)
    assert {c.info.run_id for c in children} == {r["mlflow_run_id"] for r in records.values()}
    assert all(c.info.status == "FINISHED" for c in children)
