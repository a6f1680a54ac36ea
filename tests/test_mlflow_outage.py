"""A real `mlflow server` goes away in the middle of a sweep: the trials go on and are recorded in
SQL, and once the server is back `orchestrator sync` back-fills MLflow from the results store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    free_port,
    kill_session,
    long_sweep,
    mlflow_runs,
    orchestrator,
    sql_steps,
    start_orchestrator,
    started_mlflow_server,
    stored,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.slow

SERVE_ARTIFACTS = ("--serve-artifacts",)


def test_mlflow_outage_mid_sweep_then_sync(tmp_path: Path) -> None:
    # The server's store and log in a folder of their own, kept across its restart on one port.
    served, port = tmp_path / "mlflow", free_port()
    served.mkdir()
    write_spec(tmp_path / "s.yaml", long_sweep("outage"))
    with started_mlflow_server(served, port=port, extra_args=SERVE_ARTIFACTS) as server:
        server.wait_until_serving()
        driver = start_orchestrator("submit", "s.yaml", "--mlflow-uri", server.url, cwd=tmp_path)
        try:
            wait_for(
                lambda: any((t.mlflow_last_step or 0) >= 32 for t in stored(tmp_path, "outage")),
                300,
                "MLflow to receive a trial's step 32",
            )
            kill_session(server.process.pid)  # the outage: the server and its workers die at once
            _, stderr = driver.communicate(timeout=900)
        finally:
            kill_session(driver.pid)
    assert driver.returncode == 1
    assert "orchestrator sync outage" in stderr
    trials = stored(tmp_path, "outage")
    assert [t.status for t in trials] == ["completed", "completed"]
    assert all(t.mlflow_last_step is None or t.mlflow_last_step < 384 for t in trials)

    with started_mlflow_server(served, port=port, extra_args=SERVE_ARTIFACTS) as server:
        server.wait_until_serving()
        result = orchestrator("sync", "outage", "--mlflow-uri", server.url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        client, runs = mlflow_runs(server.url, "outage")
        children = {r.info.run_id: r for r in runs if "mlflow.parentRunId" in r.data.tags}
        assert set(children) == {t.mlflow_run_id for t in trials}
        for t in trials:
            assert children[t.mlflow_run_id].info.status == "FINISHED"
            history = client.get_metric_history(t.mlflow_run_id, "gap_norm")
            assert sorted(m.step for m in history) == sql_steps(tmp_path, "outage", t.key)
            assert sql_steps(tmp_path, "outage", t.key) == list(range(0, 385, 16))
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
