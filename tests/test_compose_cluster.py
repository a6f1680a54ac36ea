"""The docker compose cluster itself: the image built offline (base images from the Debian
archive where no registry answers, Python packages from a wheelhouse filled on this host),
PostgreSQL, the MLflow server behind basic auth, a Ray head and two Ray worker containers,
brought up with Debian's docker-compose, the quickstart submitted from the head container, and
a worker container killed in the middle of a second sweep.

Every container uses the host's network with its own 127.0.0.1 port (docker/compose.loopback.yaml),
so no traffic leaves loopback. A Docker engine that is not running is started here (as root,
`dockerd --bridge=none --iptables=false`) and stopped again by its PID; the compose project has
a name of its own and is taken down with its volumes whatever happens.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import InputError
from orchestrator.store.repository import ResultsStore
from tests.conftest import TINY_BASE
from tests.helpers import free_port, missing_program, mlflow_runs, wait_for

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = ("docker/compose.yaml", "docker/compose.loopback.yaml")
USER_FILES = ("docker/compose.yaml", "docker/compose.ports.yaml")  # the README's, on a bridge
IMAGE = "gapsweep:cpu"  # every gapsweep service runs it; built once, through ray-head
# The ports of a Ray node beyond its GCS port, each its own on the shared loopback.
RAY_NODE_PORTS = (
    "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
)  # fmt: skip
WORKERS = ("ray-worker", "ray-worker-2")
# In each Ray container, one per start of its raylet: a container restarted by its restart
# policy (or a raylet the head marked dead and that started again) has had several node ids.
RAYLET_LOGS = "/tmp/ray/session_*/logs/raylet.out"
RAYLET_LOG = "/tmp/ray/session_latest/logs/raylet.out"  # the raylet running now
# Trials of several seconds each, long enough to kill a worker in the middle of one.
LONG_BASE = {
    **TINY_BASE,
    "data": {**TINY_BASE["data"], "n_train": 256},
    "optim": {**TINY_BASE["optim"], "epochs": 20},
    "eval": {"every_steps": 16},
}


def test_every_way_of_composing_the_files_is_valid_compose(tmp_path: Path) -> None:
    """The user's files (with the ports, the gpu profile) and the loopback ones, as Debian's
    docker-compose 1.29 reads them; and `up` needs every secret set, not just the example's."""
    if why := missing_program("docker-compose"):
        pytest.skip(why)
    env = tmp_path / "loopback.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in cluster_settings().items()))
    for env_file, files, extra in (
        (ROOT / ".env.example", USER_FILES, ["--profile", "gpu"]),
        (env, COMPOSE_FILES, []),
    ):
        listed = [arg for path in files for arg in ("-f", str(ROOT / path))]
        checked = subprocess.run(
            ["docker-compose", "--env-file", str(env_file), *listed, *extra, "config", "-q"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
    (tmp_path / "partial.env").write_text("POSTGRES_PASSWORD=x\n")
    refused = subprocess.run(
        ["docker-compose", "--env-file", str(tmp_path / "partial.env"),
         "-f", str(ROOT / "docker/compose.yaml"), "config", "-q"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0 and "set RAY_AUTH_TOKEN in .env" in refused.stderr


SLOW = pytest.mark.slow  # everything below brings up the real cluster


# -- the engine --------------------------------------------------------------------------------


def docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def unusable_docker() -> str | None:
    for program, package in (("docker", "docker.io"), ("docker-compose", None)):
        if why := missing_program(program, package):
            return why
    if not docker_answers():
        if why := missing_program("dockerd", "docker.io"):
            return why
        if os.geteuid() != 0:
            return "no Docker engine answers and starting dockerd needs root"
        if not may_mount():
            return "no Docker engine answers, and dockerd cannot mount here (no CAP_SYS_ADMIN)"
    return None


def may_mount() -> bool:
    """Whether this process holds CAP_SYS_ADMIN, which dockerd needs for its mounts (an
    unprivileged container's root does not)."""
    status = Path("/proc/self/status").read_text()
    effective = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff"))
    return bool(int(effective, 16) >> 21 & 1)  # CAP_SYS_ADMIN is capability 21


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker engine that answers: the machine's, else one started here and stopped after."""
    if why := unusable_docker():
        pytest.skip(why)
    if docker_answers():
        yield
        return
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("wb") as out:
        dockerd = subprocess.Popen(
            ["dockerd", "--bridge=none", "--iptables=false"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not docker_answers():
            if dockerd.poll() is not None or time.monotonic() > deadline:
                last = log.read_text(errors="replace").strip().splitlines()[-1:]
                pytest.skip(f"dockerd does not start here: {' '.join(last)}")
            time.sleep(1)
        yield
    finally:
        dockerd.terminate()
        try:
            dockerd.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dockerd.kill()


# -- the cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComposeCluster:
    project: str
    env_file: Path
    settings: dict[str, str]
    workdir: Path

    def compose(
        self, *args: str, timeout: float = 600, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(ROOT / path))]
        command = ["docker-compose", "-p", self.project, "--env-file", str(self.env_file)]
        return subprocess.run(
            [*command, *files, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
            **kwargs,
        )  # fmt: skip

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.settings['LOOPBACK_MLFLOW_PORT']}"

    @property
    def results_db(self) -> str:
        port, password = (
            self.settings["LOOPBACK_POSTGRES_PORT"],
            self.settings["RESULTS_DB_PASSWORD"],
        )
        return f"postgresql+psycopg://gapsweep_results:{password}@127.0.0.1:{port}/results"

    def node_id(self, service: str) -> str:
        """The Ray node id of the service's raylet running now."""
        return self._logged_ids(service, RAYLET_LOG)[-1]

    def node_ids(self, service: str) -> set[str]:
        """Every Ray node id the service's raylets logged, one per start of the container."""
        return set(self._logged_ids(service, RAYLET_LOGS))

    def _logged_ids(self, service: str, logs: str) -> list[str]:
        found = subprocess.run(
            ["docker", "exec", self.container(service), "sh", "-c",
             f"grep -ho 'Setting node ID node_id=[0-9a-f]*' {logs}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return [line.split("=")[-1] for line in found.stdout.split()]

    def live_worker_nodes(self) -> int:
        """How many alive Ray nodes with CPUs the head sees (the head itself has none)."""
        shown = exec_in_head(
            self, "python", "-c",
            "import ray; ray.init(); "
            "print(sum(1 for n in ray.nodes() if n['Alive'] and n['Resources'].get('CPU')))",
        )  # fmt: skip
        return int(shown.stdout.split()[-1]) if shown.returncode == 0 and shown.stdout else 0


def cluster_settings() -> dict[str, str]:
    settings = {
        name: secrets.token_hex(16)
        for name in ("POSTGRES_PASSWORD", "RESULTS_DB_PASSWORD", "MLFLOW_DB_PASSWORD",
                     "MLFLOW_PASSWORD", "MLFLOW_SECRET_KEY", "RAY_AUTH_TOKEN")
    }  # fmt: skip
    settings |= {"MLFLOW_USERNAME": "gapsweep", "RAY_WORKER_CPUS": "1", "RAY_HEAD_CPUS": "0"}
    for name in ("POSTGRES", "MLFLOW", "RAY"):
        settings[f"LOOPBACK_{name}_PORT"] = str(free_port())
    for node in ("HEAD", "WORKER", "WORKER_2"):
        flags = [f"{flag}={free_port()}" for flag in RAY_NODE_PORTS]
        if node == "HEAD":
            flags.append(f"--ray-client-server-port={free_port()}")
        settings[f"LOOPBACK_{node}_FLAGS"] = " ".join(flags)
    return settings


def wait_until_up(cluster: ComposeCluster, timeout: float = 600) -> None:
    """Every service healthy (those with a health check) or running, else fail with their logs."""
    deadline = time.monotonic() + timeout
    services = ("postgres", "mlflow", "ray-head", *WORKERS)
    while True:
        states = {s: container_state(cluster.container(s)) for s in services}
        if all(state in ("healthy", "running") for state in states.values()):
            return
        if time.monotonic() > deadline or any(
            s in ("exited", "unhealthy") for s in states.values()
        ):
            logs = cluster.compose("logs", "--tail=40").stdout[-8000:]
            raise AssertionError(f"cluster not up: {states}\n{logs}")
        time.sleep(3)


def inspected(container: str, template: str) -> str:
    """`docker inspect --format template` of the container."""
    shown = subprocess.run(
        ["docker", "inspect", "--format", template, container],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return shown.stdout.strip()


def container_state(container: str) -> str:
    state = json.loads(inspected(container, "{{json .State}}"))
    health = state.get("Health")
    return str(health["Status"] if health and state["Status"] == "running" else state["Status"])


@pytest.fixture(scope="module")
def compose_cluster(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeCluster]:
    workdir = tmp_path_factory.mktemp("compose")
    env_file = workdir / "cluster.env"
    settings = cluster_settings()
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    made = subprocess.run(
        [str(ROOT / "docker" / "offline-images"), str(env_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-4000:]
    settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    cluster = ComposeCluster(f"gapsweep-test-{secrets.token_hex(3)}", env_file, settings, workdir)
    try:
        started = time.monotonic()
        built = cluster.compose("build", "ray-head", timeout=3000)
        build_seconds = time.monotonic() - started
        assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
        size = subprocess.run(
            ["docker", "image", "inspect", IMAGE, "--format", "{{.Size}}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        figures = {"build_seconds": round(build_seconds), "image_bytes": int(size)}
        (workdir / "figures.json").write_text(json.dumps(figures))
        up = cluster.compose("up", "-d")
        assert up.returncode == 0, up.stderr[-4000:]
        wait_until_up(cluster)
        # A worker container runs before its raylet has joined: a sweep submitted then places
        # every trial on the worker that joined first.
        wait_for(lambda: cluster.live_worker_nodes() == len(WORKERS), 300, "both Ray workers")
        yield cluster
    finally:
        (workdir / "compose.log").write_text(cluster.compose("logs", "--no-color").stdout)
        cluster.compose("down", "--volumes", "--remove-orphans", timeout=300)


# -- what the tests read -----------------------------------------------------------------------


def exec_in_head(
    cluster: ComposeCluster, *command: str, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return cluster.compose("exec", "-T", "ray-head", *command, timeout=1500, **kwargs)


def results(cluster: ComposeCluster, sweep: str) -> list[dict[str, Any]]:
    shown = exec_in_head(cluster, "orchestrator", "results", sweep, "--format", "json")
    assert shown.returncode == 0, shown.stderr[-3000:]
    records: list[dict[str, Any]] = json.loads(shown.stdout)
    return records


@contextlib.contextmanager
def mlflow_credentials(cluster: ComposeCluster) -> Iterator[None]:
    names = {
        "MLFLOW_TRACKING_USERNAME": "MLFLOW_USERNAME",
        "MLFLOW_TRACKING_PASSWORD": "MLFLOW_PASSWORD",
    }
    before = {name: os.environ.get(name) for name in names}
    os.environ.update({name: cluster.settings[key] for name, key in names.items()})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stored_once(cluster: ComposeCluster, sweep: str, keys: list[str]) -> None:
    """Each trial one row in the PostgreSQL container and one child run on the MLflow server."""
    with ResultsStore(cluster.results_db) as store:
        rows = store.trials(sweep)
    assert sorted(t.key for t in rows) == sorted(keys)
    assert {t.status for t in rows} == {"completed"}
    with mlflow_credentials(cluster):
        _, runs = mlflow_runs(cluster.mlflow_uri, sweep)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) - len(children) == 1  # the sweep's parent run
    assert sorted(c.data.tags["gapsweep.trial_key"] for c in children) == sorted(keys)
    assert all(c.info.status == "FINISHED" for c in children)


# -- the tests ---------------------------------------------------------------------------------


@SLOW
def test_the_mlflow_server_asks_for_credentials(compose_cluster: ComposeCluster) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(compose_cluster.mlflow_uri + "/", timeout=10)
    assert refused.value.code == 401
    settings = compose_cluster.settings
    user = f"{settings['MLFLOW_USERNAME']}:{settings['MLFLOW_PASSWORD']}"
    request = urllib.request.Request(
        compose_cluster.mlflow_uri + "/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Authorization": "Basic " + base64.b64encode(user.encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@SLOW
def test_up_refuses_a_secret_left_at_the_placeholder(compose_cluster: ComposeCluster) -> None:
    """The same files and image, another project whose .env keeps two placeholders: `up`
    stops at check-settings, which names both, and starts nothing else."""
    settings = compose_cluster.settings | {
        "MLFLOW_PASSWORD": "change-me",
        "RAY_AUTH_TOKEN": "short",
    }
    env_file = compose_cluster.workdir / "placeholders.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    refused = ComposeCluster(
        f"{compose_cluster.project}-refused", env_file, settings, compose_cluster.workdir
    )
    try:
        up = refused.compose("up", "-d", "postgres")
        assert up.returncode != 0 and "exited with code 2" in up.stderr, up.stderr
        said = refused.compose("logs", "--no-color", "check-settings").stdout
        assert "MLFLOW_PASSWORD in .env is still .env.example's change-me" in said
        assert "RAY_AUTH_TOKEN in .env is shorter than 12 characters" in said
        assert not refused.compose("ps", "-q", "postgres").stdout.strip()
    finally:
        refused.compose("down", "--volumes", "--remove-orphans", timeout=300)


@SLOW
def test_the_quickstart_runs_on_both_worker_containers(compose_cluster: ComposeCluster) -> None:
    started = time.monotonic()
    submitted = exec_in_head(compose_cluster, "orchestrator", "submit", "sweeps/temperature.yaml")
    assert submitted.returncode == 0, submitted.stdout[-4000:] + submitted.stderr[-4000:]
    (compose_cluster.workdir / "quickstart.seconds").write_text(f"{time.monotonic() - started:.0f}")
    records = results(compose_cluster, "temperature")
    assert len(records) == 18 and {r["status"] for r in records} == {"completed"}
    workers = [compose_cluster.node_ids(w) for w in WORKERS]
    nodes = {r["node"] for r in records}
    assert all(nodes & ids for ids in workers), f"trials on {nodes}, not on both of {workers}"
    assert nodes <= set.union(*workers), "trials ran on the worker containers only"
    stored_once(compose_cluster, "temperature", [r["key"] for r in records])


@SLOW
def test_a_killed_worker_container_loses_nothing_and_doubles_nothing(
    compose_cluster: ComposeCluster,
) -> None:
    spec = {
        "name": "lost",
        "base": LONG_BASE,
        "parameters": {"seed": {"grid": [0, 1, 2, 3]}},
        "metric": {"name": "gap_norm", "mode": "min"},
        "resources": {"cpu": 1, "gpu": 0},
        "max_failures": 3,
    }
    head = compose_cluster.container("ray-head")
    copied = subprocess.run(
        ["docker", "exec", "-i", head, "sh", "-c", "cat > /tmp/lost.yaml"],
        input=yaml.safe_dump(spec), text=True, capture_output=True,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    # Both workers in the cluster before the sweep starts (a raylet the head marked dead comes
    # back as a new node when its container restarts): its two trials at a time use both.
    wait_for(lambda: compose_cluster.live_worker_nodes() == len(WORKERS), 300, "both workers")
    log = compose_cluster.workdir / "submit-lost.log"
    files = [arg for path in COMPOSE_FILES for arg in ("-f", str(ROOT / path))]
    with log.open("w") as out:
        submit = subprocess.Popen(
            ["docker-compose", "-p", compose_cluster.project, "--env-file",
             str(compose_cluster.env_file), *files, "exec", "-T", "ray-head",
             "orchestrator", "submit", "/tmp/lost.yaml"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    victim = compose_cluster.node_id("ray-worker-2")
    try:
        lost = wait_for_a_trial_on(compose_cluster, victim, submit, log)
        subprocess.run(["docker", "kill", compose_cluster.container("ray-worker-2")], check=True)
        assert submit.wait(timeout=900) == 0, log.read_text()[-6000:]
    finally:
        if submit.poll() is None:
            submit.kill()
    records = {r["key"]: r for r in results(compose_cluster, "lost")}
    assert len(records) == 4 and {r["status"] for r in records.values()} == {"completed"}
    # Retried, and finished on a worker that was left (the survivor, or the killed container
    # once its restart policy brought it back as a new Ray node).
    workers = compose_cluster.node_ids("ray-worker")
    if container_state(compose_cluster.container("ray-worker-2")) in ("running", "healthy"):
        workers |= compose_cluster.node_ids("ray-worker-2")
    for key in lost:
        record = records[key]
        assert record["attempts"] > 1 and record["node"] in workers - {victim}, record
    stored_once(compose_cluster, "lost", list(records))


def wait_for_a_trial_on(
    cluster: ComposeCluster, node: str, submit: subprocess.Popen[str], log: Path
) -> list[str]:
    """Keys of the trials reporting from `node` and still running there."""
    deadline = time.monotonic() + 300
    with ResultsStore(cluster.results_db) as store:
        while time.monotonic() < deadline and submit.poll() is None:
            with contextlib.suppress(InputError):  # the sweep is not registered yet
                found = [
                    t.key
                    for t in store.trials("lost")
                    if t.status == "running" and t.node_id == node
                ]
                if found:
                    return found
            time.sleep(0.5)
    with ResultsStore(cluster.results_db) as store:
        placed = {t.key[:8]: (t.status, (t.node_id or "")[:8]) for t in store.trials("lost")}
    restarts = {w: inspected(cluster.container(w), "{{.RestartCount}}") for w in WORKERS}
    raise AssertionError(
        f"no trial ran on {node[:8]}: trials {placed}, container restarts {restarts}\n"
        f"{log.read_text()[-4000:]}"
    )
