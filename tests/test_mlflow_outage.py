"""A real `mlflow server` goes away in the middle of a sweep: the trials go on and are recorded in
SQL, and once the server is back `orchestrator sync` back-fills MLflow from the results store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    free_port,
    kill_session,
    mlflow_runs,
    orchestrator,
    serves_health,
    start_orchestrator,
    wait_for,
    write_spec,
)
from tests.test_faults import LONG, spec, sql_steps, stored

pytestmark = pytest.mark.slow

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


class MlflowServer:
    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                MLFLOW,
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'server.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # Its background job runners are unused here and cost seven processes.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        wait_for(lambda: serves_health(self.url), 120, "the MLflow server to answer /health")

    def kill(self) -> None:
        if self.process is not None:
            kill_session(self.process.pid)
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    running = MlflowServer(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.kill()


def test_mlflow_outage_mid_sweep_then_sync(tmp_path: Path, server: MlflowServer) -> None:
    write_spec(tmp_path / "s.yaml", spec("outage", base=LONG))
    driver = start_orchestrator("submit", "s.yaml", "--mlflow-uri", server.url, cwd=tmp_path)
    try:
        wait_for(
            lambda: any((t.mlflow_last_step or 0) >= 32 for t in stored(tmp_path, "outage")),
            300,
            "MLflow to receive a trial's step 32",
        )
        server.kill()
        _, stderr = driver.communicate(timeout=900)
    finally:
        kill_session(driver.pid)
    assert driver.returncode == 1
    assert "orchestrator sync outage" in stderr
    trials = stored(tmp_path, "outage")
    assert [t.status for t in trials] == ["completed", "completed"]
    assert all(t.mlflow_last_step is None or t.mlflow_last_step < 384 for t in trials)

    server.start()
    result = orchestrator("sync", "outage", "--mlflow-uri", server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client, runs = mlflow_runs(server.url, "outage")
    children = {r.info.run_id: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {t.mlflow_run_id for t in trials}
    for t in trials:
        assert children[t.mlflow_run_id].info.status == "FINISHED"
        history = client.get_metric_history(t.mlflow_run_id, "gap_norm")
        assert sorted(m.step for m in history) == sql_steps(tmp_path, t.key)
        assert sql_steps(tmp_path, t.key) == list(range(0, 385, 16))
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
