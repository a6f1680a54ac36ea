"""The one owner of MLflow writes: one parent run per sweep, one nested child run per trial.

Every call that changes MLflow goes through `MlflowTracker`; the mirror, `sync` and the report
use it and never touch MLflow's client themselves. It uses `MlflowClient` rather than the fluent
API so that no global "active run" state is involved and several trials' runs can be open at
once. Run ids are kept in the results store, so a sweep that is submitted again reuses its runs
instead of creating duplicates; and since a driver can die between MLflow's `create_run` and
saving the id in the store, a run is first looked for by its tags (the sweep, and the trial's
key) before one is made: the next driver adopts the run the dead one made.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import ServiceError
from orchestrator.store.engine import mask_url

PARAM_BATCH = 100  # MLflow accepts at most 100 params per log_batch call
METRIC_BATCH = 1000  # and at most 1000 metric values
SWEEP_TAG, KEY_TAG, ROLE_TAG = "gapsweep.sweep", "gapsweep.trial_key", "gapsweep.role"
SEARCH_PAGE = 1000  # runs per search_runs call
# For the kill-window tests (docs/reliability.md): the driver SIGKILLs itself at the named point.
KILL_ENV = "GAPSWEEP_KILL_DRIVER_AT"
# MLflow 3's UI opens experiments in its GenAI view unless told they are model training.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


class MlflowTracker:
    def __init__(self, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        # MLflow logs its schema migrations at INFO on every new store; not news to a user.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # By default a request to a server that went away is retried for minutes, which would
        # stall the whole sweep; the mirror retries later instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        # With a server, MLflow prints a "View run" link per finished run into the live table.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def experiment_for(self, sweep: str) -> str:
        """The experiment named after the sweep, created on first use."""
        try:
            experiment = self.client.get_experiment_by_name(sweep)
            if experiment is None:
                return str(self.client.create_experiment(sweep, tags=EXPERIMENT_TAGS))
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return str(experiment.experiment_id)
        except Exception as exc:  # MLflow raises many types for an unreachable store
            raise ServiceError(
                f"MLflow tracking store {mask_url(self.uri)} is unreachable or unusable: "
                f"{_first_line(exc)}"
            ) from None

    def start_sweep_run(
        self, experiment_id: str, sweep: str, spec_text: str, existing: str | None
    ) -> str:
        """The sweep's parent run: `existing` when it is still there, else the one an earlier
        driver made (found by its tags), else a new one."""
        run_id = self._reusable(existing) or self._find_sweep_run(experiment_id, sweep)
        if run_id is None:
            tags = {SWEEP_TAG: sweep, ROLE_TAG: "sweep", **run_tags()}
            run = self.client.create_run(experiment_id, run_name=sweep, tags=tags)
            run_id = run.info.run_id
            kill_point("sweep-run-created")
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.client.log_text(run_id, spec_text, "spec.yaml")
        return run_id

    def _find_sweep_run(self, experiment_id: str, sweep: str) -> str | None:
        where = f"tags.`{SWEEP_TAG}` = '{sweep}' AND tags.`{ROLE_TAG}` = 'sweep'"
        found = self.client.search_runs(
            [experiment_id], where, max_results=1, order_by=["attributes.start_time ASC"]
        )
        return str(found[0].info.run_id) if found else None

    def start_trial_run(
        self,
        experiment_id: str,
        parent_run_id: str,
        sweep: str,
        trial: tuple[str, str],
        params: Mapping[str, Any],
        existing: str | None,
    ) -> str:
        """A child run for the trial (key, name), reusing `existing` when it is still there.
        The caller looks for a run an earlier driver made first (`trial_runs`)."""
        key, name = trial
        run_id = self._reusable(existing)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {"mlflow.parentRunId": parent_run_id, SWEEP_TAG: sweep, KEY_TAG: key, **run_tags()}
        if "seed" in params:
            tags["gapsweep.seed"] = str(params["seed"])
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        kill_point("trial-run-created")
        self.log_params(run.info.run_id, params)
        return str(run.info.run_id)

    def trial_runs(
        self, experiment_id: str, sweep: str, status: str | None = None
    ) -> dict[str, str]:
        """The sweep's child runs by trial key (the oldest, where an earlier bug made two),
        only those in `status` when given: a few search calls for the whole sweep."""
        where = f"tags.`{SWEEP_TAG}` = '{sweep}' AND tags.`{KEY_TAG}` != ''"
        if status is not None:
            where += f" AND attributes.status = '{status}'"
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                where,
                max_results=SEARCH_PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            for run in page:
                found.setdefault(str(run.data.tags[KEY_TAG]), str(run.info.run_id))
            token = page.token
            if not token:
                return found

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if math.isfinite(v)]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_metric_rows(
        self,
        run_id: str,
        rows: list[tuple[int, str, float]],
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log (step, name, value) rows, and the run's `tags` with the first of them, in as few
        batch calls as MLflow allows."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        batch = [Metric(n, v, now, step) for step, n, v in rows if math.isfinite(v)]
        run_tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        # MLflow takes at most METRIC_BATCH values and tags together per call: the tags go
        # with the first values, in what room they leave.
        first = max(METRIC_BATCH - len(run_tags), 0)
        if batch[:first] or run_tags:
            self.client.log_batch(run_id, metrics=batch[:first], tags=run_tags)
        for start in range(first, len(batch), METRIC_BATCH):
            self.client.log_batch(run_id, metrics=batch[start : start + METRIC_BATCH])

    def last_logged_step(self, run_id: str) -> int | None:
        """The last step every metric of the run has reached in MLflow (None: none logged)."""
        names = list(self.client.get_run(run_id).data.metrics)
        if not names:
            return None
        return min(
            max(m.step for m in self.client.get_metric_history(run_id, name)) for name in names
        )

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_files(self, run_id: str, files: list[Path], folder: str | None = None) -> None:
        for file in files:
            self.client.log_artifact(run_id, str(file), artifact_path=folder)

    def mark_running(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """The trial's config; logging the same values again is allowed (an adopted run)."""
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        for start in range(0, len(items), PARAM_BATCH):
            self.client.log_batch(run_id, params=items[start : start + PARAM_BATCH])

    def _reusable(self, run_id: str | None) -> str | None:
        if run_id is None:
            return None
        try:
            run = self.client.get_run(run_id)
        except Exception:  # deleted or from another tracking store: make a new one
            return None
        return None if run.info.lifecycle_stage == "deleted" else run_id


def kill_point(name: str) -> None:
    """SIGKILL this process here when GAPSWEEP_KILL_DRIVER_AT names this point: how the tests
    put a driver's death in a window between two writes. Unset, as it is outside tests, nothing
    happens."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@functools.cache
def run_tags() -> dict[str, str]:
    """Provenance for every run: the code's git commit and the versions that produced it."""
    from importlib.metadata import PackageNotFoundError, version

    tags = {"gapsweep.git_commit": _git_commit(), "gapsweep.driver_host": socket.gethostname()}
    for package in ("gapsweep", "torch", "ray", "mlflow", "transformers"):
        try:
            tags[f"gapsweep.version.{package}"] = version(package)
        except PackageNotFoundError:
            continue
    return tags


def _git_commit() -> str:
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return "unknown"
    return commit + ("-dirty" if dirty else "")
