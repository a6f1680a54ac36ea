"""The results store: every write and read of sweeps, trials and metric series goes through here.

Contract: a trial is identified by (sweep name, key) and has exactly one row; its metric series
holds at most one value per (step, name); a trial's status moves pending -> running -> one of
views.TERMINAL, and a completed trial is never reset by `register_trials`. Every public method
raises the driver's failures as `ServiceError` naming the store by its masked URL. Use it as a
context manager, which disposes of its connections.

While this store holds a sweep's lease (`holding_lease`), every write to that sweep is fenced:
it is refused with `LeaseLostError`, writing nothing, once another driver took the lease over.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from orchestrator.errors import InputError, ServiceError
from orchestrator.store import lease
from orchestrator.store.engine import (
    bring_schema_to_head,
    mask_url,
    missing_sqlite_file,
    retried,
    tried_once,
)
from orchestrator.store.lease import Fence, HeartbeatThread, Holder
from orchestrator.store.models import MetricRow, SweepRow, TrialRow, utcnow
from orchestrator.store.sessions import StoreSessions
from orchestrator.store.versions import SweepVersions
from orchestrator.store.views import (
    TERMINAL,
    VIEW_COLUMNS,
    NewTrial,
    SweepView,
    TrialView,
    new_trial_row,
    sweep_view,
    trial_view,
)


class ResultsStore(StoreSessions):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        # Row ids never change once made (rows are never deleted), so each is looked up once.
        self._sweep_ids: dict[str, int] = {}
        self._trial_ids: dict[tuple[str, str], int] = {}
        self.versions = SweepVersions(self._session, self._writing)
        self.drivers = lease.Drivers(self._session)
        try:
            self.schema_change = bring_schema_to_head(self.engine, url)
        except OperationalError as exc:
            self.engine.dispose()
            reason = " ".join(str(exc.orig).split())  # psycopg's messages span lines
            raise ServiceError(f"results store {mask_url(url)} is unreachable: {reason}") from None

    @classmethod
    def open_existing(cls, url: str) -> ResultsStore:
        """The store at `url` for reading; a SQLite file that does not exist is an InputError
        (opening it would silently create an empty store)."""
        if missing_sqlite_file(url):
            raise InputError(
                f"no results store at {url}; run `orchestrator submit SPEC` first or pass "
                "--results-db"
            )
        return cls(url)

    # -- sweeps -------------------------------------------------------------------------------

    @retried
    def upsert_sweep(
        self,
        name: str,
        trainer: str,
        spec_text: str,
        spec_hash: str,
        metric: tuple[str, str],
        overrides: dict[str, Any] | None = None,
    ) -> SweepView:
        with self._writing(name) as s:
            row = s.scalar(select(SweepRow).where(SweepRow.name == name))
            if row is None:
                row = SweepRow(name=name, created_at=utcnow())
                s.add(row)
            row.trainer, row.spec_text, row.spec_hash = trainer, spec_text, spec_hash
            row.metric_name, row.metric_mode = metric
            row.overrides = overrides or None
            s.flush()
            return sweep_view(row)

    @retried
    def get_sweep(self, name: str) -> SweepView | None:
        with self._session() as s:
            row = s.scalar(select(SweepRow).where(SweepRow.name == name))
            return None if row is None else sweep_view(row)

    def sweep_and_trials(self, name: str) -> tuple[SweepView, list[TrialView]]:
        """The sweep and its trials; an InputError naming the known sweeps when there is none."""
        view = self.get_sweep(name)
        if view is None:
            known = ", ".join(s.name for s in self.list_sweeps()) or "none yet"
            raise InputError(f"no sweep named {name!r} in the results store (sweeps: {known})")
        return view, self.trials(name)

    @retried
    def stored_spec(self, name: str) -> tuple[str, dict[str, Any]]:
        """The spec text the sweep was last submitted with, and its `--set` overrides."""
        with self._session() as s:
            found = s.execute(
                select(SweepRow.spec_text, SweepRow.overrides).where(SweepRow.name == name)
            ).first()
            if found is None:
                raise InputError(f"no sweep named {name!r} in the results store")
            return str(found[0]), dict(found[1] or {})

    @retried
    def list_sweeps(self) -> list[SweepView]:
        with self._session() as s:
            return [sweep_view(r) for r in s.scalars(select(SweepRow).order_by(SweepRow.id))]

    @retried
    def set_sweep_mlflow(self, name: str, experiment_id: str, run_id: str) -> None:
        with self._writing(name) as s:
            s.execute(
                update(SweepRow)
                .where(SweepRow.name == name)
                .values(mlflow_experiment_id=experiment_id, mlflow_run_id=run_id)
            )

    # -- the lease (lease.py) -----------------------------------------------------------------

    @retried
    def acquire_lease(self, sweep: str, holder: Holder, stale_after_s: float) -> Fence:
        """Take the sweep's lease (SweepBusyError while a live driver holds it); from now on
        every write of this store to the sweep is fenced by it."""
        fence = lease.acquire(self._session, sweep, holder, stale_after_s)
        self._fences[sweep] = fence
        return fence

    @retried
    def heartbeat(self, sweep: str) -> None:
        lease.heartbeat(self._session, self._fences[sweep])

    @retried
    def release_lease(self, sweep: str) -> None:
        fence = self._fences.pop(sweep, None)
        if fence is not None:
            lease.release(self._session, fence)

    @retried
    def check_lease(self, sweep: str) -> None:
        """LeaseLostError unless this store still holds the sweep's lease: for a driver about to
        write to MLflow alone, which the store's fence cannot guard."""
        with self._writing(sweep):
            pass

    @contextmanager
    def holding_lease(self, sweep: str, stale_after_s: float | None = None) -> Iterator[Fence]:
        """The sweep's lease, kept fresh by a heartbeat thread until the block ends, then
        released. `stale_after_s` defaults to GAPSWEEP_LEASE_TIMEOUT_S (or 120 s)."""
        timeout = lease.timeout_s() if stale_after_s is None else stale_after_s
        fence = self.acquire_lease(sweep, Holder.this_process(), timeout)
        beats = HeartbeatThread(lambda: self.heartbeat(sweep), timeout, self._session, fence)
        beats.start()
        try:
            yield fence
        except BaseException:
            beats.stop()
            # Out of a failure, maybe the store's: one try; an unreleased lease is taken over.
            with suppress(ServiceError), tried_once():
                self.release_lease(sweep)
            raise
        beats.stop()
        self.release_lease(sweep)

    # -- trials -------------------------------------------------------------------------------

    @retried
    def register_trials(self, sweep: str, trials: Sequence[NewTrial]) -> dict[str, str]:
        """Add the trials not yet stored as pending; return every planned key's current status."""
        with self._writing(sweep) as s:
            sweep_id = self._sweep_id(s, sweep)
            existing = {
                r.key: r for r in s.scalars(select(TrialRow).where(TrialRow.sweep_id == sweep_id))
            }
            for t in trials:
                row = existing.get(t.key)
                if row is None:
                    s.add(new_trial_row(sweep_id, t))
                else:
                    row.name, row.position = t.name, t.position
            return {
                t.key: existing[t.key].status if t.key in existing else "pending" for t in trials
            }

    @retried
    def mark_running(self, sweep: str, key: str, host: str | None, node_id: str | None) -> int:
        """Start a new attempt; returns its number. The series so far is kept: an attempt that
        resumes from a checkpoint continues it (see `record_metrics`)."""
        with self._writing(sweep) as s:
            row = s.get_one(TrialRow, self._trial_id(s, sweep, key))
            row.status, row.attempts = "running", row.attempts + 1
            row.host, row.node_id, row.started_at, row.ended_at = host, node_id, utcnow(), None
            row.error, row.final_metrics, row.non_finite = None, None, None
            return row.attempts

    def set_placement(
        self,
        sweep: str,
        key: str,
        host: str | None,
        node_id: str | None,
        resumed_from_step: int | None = None,
    ) -> None:
        """Where the current attempt runs, and the checkpoint step it resumed from (if any)."""
        values = {"host": host, "node_id": node_id, "resumed_from_step": resumed_from_step}
        self._update_trial(sweep, key, values)

    @retried
    def trial(self, sweep: str, key: str) -> TrialView:
        with self._session() as s:
            q = select(*VIEW_COLUMNS).where(TrialRow.id == self._trial_id(s, sweep, key))
            return trial_view(tuple(s.execute(q).one()))

    @retried
    def metrics_after(self, sweep: str, key: str, after_step: int) -> list[tuple[int, str, float]]:
        """(step, name, value) of every stored value past `after_step`, in step order."""
        with self._session() as s:
            q = (
                select(MetricRow.step, MetricRow.name, MetricRow.value)
                .where(MetricRow.trial_id == self._trial_id(s, sweep, key))
                .where(MetricRow.step > after_step)
                .order_by(MetricRow.step, MetricRow.name)
            )
            return [(int(st), str(n), float(v)) for st, n, v in s.execute(q)]

    def set_mlflow_step(self, sweep: str, key: str, step: int) -> None:
        self._update_trial(sweep, key, {"mlflow_last_step": step})

    def set_checkpoint(self, sweep: str, key: str, path: str) -> None:
        self._update_trial(sweep, key, {"checkpoint_path": path})

    def set_trial_run_id(self, sweep: str, key: str, run_id: str) -> None:
        self._update_trial(sweep, key, {"mlflow_run_id": run_id})

    def set_search_state(self, sweep: str, key: str, state: dict[str, Any]) -> None:
        self._update_trial(sweep, key, {"search_state": state})

    def record_metrics(
        self,
        sweep: str,
        key: str,
        step: int,
        metrics: dict[str, float],
        first_of_attempt: bool = False,
    ) -> None:
        """Store one step's values, replacing any stored for that step. The first result of an
        attempt also drops every later step: those came from a failed attempt after the
        checkpoint this one resumed from, and will be reported again."""
        self.record_many(sweep, key, [(step, metrics)], first_of_attempt)

    @retried
    def record_many(
        self,
        sweep: str,
        key: str,
        reports: Sequence[tuple[int, Mapping[str, float]]],
        first_of_attempt: bool = False,
    ) -> None:
        """`record_metrics` of each report in order, in three statements: the stored values as
        they would be after the reports one by one (a step reported twice keeps its last)."""
        if not reports:
            return
        by_step = {int(step): metrics for step, metrics in reports}
        first, last = int(reports[0][0]), int(reports[-1][0])
        with self._writing(sweep) as s:
            trial_id = self._trial_id(s, sweep, key)
            stale: ColumnElement[bool] = MetricRow.step.in_(list(by_step))
            if first_of_attempt:
                stale = or_(stale, MetricRow.step >= first)
            s.execute(delete(MetricRow).where(MetricRow.trial_id == trial_id, stale))
            rows = [
                {"trial_id": trial_id, "step": step, "name": n, "value": v}
                for step, metrics in by_step.items()
                for n, v in metrics.items()
                if math.isfinite(v)
            ]
            if rows:
                s.execute(insert(MetricRow), rows)
            s.execute(update(TrialRow).where(TrialRow.id == trial_id).values(last_step=last))

    def finish_trial(
        self,
        sweep: str,
        key: str,
        status: str,
        metrics: dict[str, float] | None,
        error: str | None = None,
    ) -> None:
        if status not in TERMINAL:
            raise ValueError(f"not a terminal status: {status}")
        values: dict[str, Any] = {"status": status, "ended_at": utcnow(), "error": error}
        if metrics is not None:
            # JSON null where a value is not finite (PostgreSQL's JSON refuses NaN), the kind kept.
            finite = {k: v if math.isfinite(v) else None for k, v in metrics.items()}
            kinds = {k: str(v) for k, v in metrics.items() if not math.isfinite(v)}
            values["final_metrics"], values["non_finite"] = finite, kinds or None
        self._update_trial(sweep, key, values)

    @retried
    def stop_unfinished(self, sweep: str, keys: Sequence[str]) -> list[str]:
        """Mark the given trials that are still running as stopped; returns their keys."""
        with self._writing(sweep) as s:
            rows = s.scalars(
                select(TrialRow).where(
                    TrialRow.sweep_id == self._sweep_id(s, sweep),
                    TrialRow.key.in_(list(keys)),
                    TrialRow.status == "running",
                )
            ).all()
            for row in rows:
                row.status, row.ended_at = "stopped", utcnow()
            return [row.key for row in rows]

    @retried
    def trials(self, sweep: str) -> list[TrialView]:
        """Every trial of the sweep in plan order."""
        with self._session() as s:
            q = (
                select(*VIEW_COLUMNS)
                .where(TrialRow.sweep_id == self._sweep_id(s, sweep))
                .order_by(TrialRow.position)
            )
            return [trial_view(tuple(r)) for r in s.execute(q)]

    @retried
    def metric_series(self, sweep: str, key: str, name: str) -> list[tuple[int, float]]:
        with self._session() as s:
            q = (
                select(MetricRow.step, MetricRow.value)
                .where(MetricRow.trial_id == self._trial_id(s, sweep, key), MetricRow.name == name)
                .order_by(MetricRow.step)
            )
            return [(int(step), float(value)) for step, value in s.execute(q)]

    @retried
    def count_metric_rows(self, sweep: str) -> int:
        with self._session() as s:
            q = (
                select(func.count(MetricRow.id))
                .join(TrialRow, MetricRow.trial_id == TrialRow.id)
                .where(TrialRow.sweep_id == self._sweep_id(s, sweep))
            )
            return int(s.scalar(q) or 0)

    @retried
    def _update_trial(self, sweep: str, key: str, values: dict[str, Any]) -> None:
        with self._writing(sweep) as s:
            s.execute(
                update(TrialRow).where(TrialRow.id == self._trial_id(s, sweep, key)).values(values)
            )

    def _sweep_id(self, s: Session, sweep: str) -> int:
        found = self._sweep_ids.get(sweep)
        if found is None:
            found = s.scalar(select(SweepRow.id).where(SweepRow.name == sweep))
            if found is None:
                raise InputError(f"no sweep named {sweep!r} in the results store")
            self._sweep_ids[sweep] = found
        return found

    def _trial_id(self, s: Session, sweep: str, key: str) -> int:
        found = self._trial_ids.get((sweep, key))
        if found is None:
            sweep_id = self._sweep_id(s, sweep)
            found = s.scalars(
                select(TrialRow.id).where(TrialRow.sweep_id == sweep_id, TrialRow.key == key)
            ).one_or_none()
            if found is None:
                raise InputError(f"no trial {key!r} in sweep {sweep!r} of the results store")
            self._trial_ids[(sweep, key)] = found
        return found
