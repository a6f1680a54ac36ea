"""The results store: every write and read of sweeps, trials and metric series goes through here.

Contract: a trial is identified by (sweep name, key) and has exactly one row; its metric series
holds at most one value per (step, name); a trial's status moves pending -> running ->
completed | failed | stopped, and a trial that completed is never reset by `register_trials`.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, create_engine, delete, event, func, select, update
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import InputError, ServiceError, SweepBusyError
from orchestrator.store.models import LeaseRow, MetricRow, SweepRow, TrialRow, utcnow
from orchestrator.store.revision import HEAD_REVISION, stored_revision

TERMINAL = ("completed", "failed", "stopped")


@dataclass(frozen=True)
class Holder:
    """One driver process, as a lease records it."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Holder:
        return cls(id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())


@dataclass(frozen=True)
class NewTrial:
    key: str
    name: str
    position: int
    config: dict[str, Any]
    varied: dict[str, Any]


@dataclass(frozen=True)
class TrialView:
    key: str
    name: str
    status: str
    attempts: int
    config: dict[str, Any]
    varied: dict[str, Any]
    metrics: dict[str, float]
    error: str | None
    host: str | None
    node_id: str | None
    mlflow_run_id: str | None
    last_step: int | None
    resumed_from_step: int | None
    mlflow_last_step: int | None
    checkpoint_path: str | None
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class SweepView:
    name: str
    metric_name: str
    metric_mode: str
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    created_at: datetime


class ResultsStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self.schema_change = self._bring_schema_to_head()
        except OperationalError as exc:
            raise ServiceError(
                f"results store {mask_url(url)} is unreachable: {exc.orig}"
            ) from None

    def _bring_schema_to_head(self) -> tuple[str | None, str]:
        # A store already at head, the usual case, needs one query; Alembic and its migration
        # scripts (a fifth of a second: most of `results` on a small sweep) only load otherwise.
        stored = stored_revision(self.engine)
        if stored == HEAD_REVISION:
            return stored, stored
        from orchestrator.store.schema import upgrade

        return upgrade(self.engine, mask_url(self.url))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- sweeps -------------------------------------------------------------------------------

    def upsert_sweep(
        self, name: str, trainer: str, spec_text: str, spec_hash: str, metric: tuple[str, str]
    ) -> SweepView:
        with self._session() as s:
            row = s.scalar(select(SweepRow).where(SweepRow.name == name))
            if row is None:
                row = SweepRow(name=name, created_at=utcnow())
                s.add(row)
            row.trainer, row.spec_text, row.spec_hash = trainer, spec_text, spec_hash
            row.metric_name, row.metric_mode = metric
            s.flush()
            return _sweep_view(row)

    def get_sweep(self, name: str) -> SweepView | None:
        with self._session() as s:
            row = s.scalar(select(SweepRow).where(SweepRow.name == name))
            return None if row is None else _sweep_view(row)

    def spec_text(self, name: str) -> str:
        with self._session() as s:
            text = s.scalar(select(SweepRow.spec_text).where(SweepRow.name == name))
            if text is None:
                raise InputError(f"no sweep named {name!r} in the results store")
            return text

    def list_sweeps(self) -> list[SweepView]:
        with self._session() as s:
            return [_sweep_view(r) for r in s.scalars(select(SweepRow).order_by(SweepRow.id))]

    def set_sweep_mlflow(self, name: str, experiment_id: str, run_id: str) -> None:
        with self._session() as s:
            row = s.scalars(select(SweepRow).where(SweepRow.name == name)).one()
            row.mlflow_experiment_id, row.mlflow_run_id = experiment_id, run_id

    # -- leases -------------------------------------------------------------------------------

    def acquire_lease(self, sweep: str, holder: Holder, stale_after_s: float) -> None:
        """Become the one driver of `sweep`, or raise SweepBusyError naming who is.

        A lease whose heartbeat is older than `stale_after_s`, or whose holder process on this
        same host is gone, is taken over: its driver died without releasing it.
        """
        now = utcnow()
        try:
            with self._session() as s:
                s.add(
                    LeaseRow(
                        sweep_name=sweep,
                        holder=holder.id,
                        host=holder.host,
                        pid=holder.pid,
                        acquired_at=now,
                        heartbeat_at=now,
                    )
                )
            return
        except IntegrityError:
            pass
        with self._session() as s:
            current = s.get(LeaseRow, sweep)
            if current is None:  # released in between: try once more from the start
                return self.acquire_lease(sweep, holder, stale_after_s)
            age = (now - _aware(current.heartbeat_at)).total_seconds()
            dead = current.host == holder.host and not _pid_alive(current.pid)
            if age < stale_after_s and not dead:
                raise SweepBusyError(
                    f"sweep {sweep!r} is already being run by process {current.pid} on "
                    f"{current.host} (last heartbeat {age:.0f} s ago); wait for it to finish, "
                    f"or stop it first — a lease left by a killed driver expires after "
                    f"{stale_after_s:.0f} s"
                )
            taken = cast(
                CursorResult[Any],
                s.execute(
                    update(LeaseRow)
                    .where(LeaseRow.sweep_name == sweep, LeaseRow.holder == current.holder)
                    .values(
                        holder=holder.id,
                        host=holder.host,
                        pid=holder.pid,
                        acquired_at=now,
                        heartbeat_at=now,
                    )
                ),
            )
            if taken.rowcount != 1:  # another driver took it over first
                raise SweepBusyError(f"sweep {sweep!r} was just taken over by another driver")
        return None

    def heartbeat(self, sweep: str, holder: Holder) -> None:
        with self._session() as s:
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.sweep_name == sweep, LeaseRow.holder == holder.id)
                .values(heartbeat_at=utcnow())
            )

    def release_lease(self, sweep: str, holder: Holder) -> None:
        with self._session() as s:
            s.execute(
                delete(LeaseRow).where(LeaseRow.sweep_name == sweep, LeaseRow.holder == holder.id)
            )

    # -- trials -------------------------------------------------------------------------------

    def register_trials(self, sweep: str, trials: Sequence[NewTrial]) -> dict[str, str]:
        """Add the trials not yet stored as pending; return every planned key's current status."""
        with self._session() as s:
            sweep_id = self._sweep_id(s, sweep)
            existing = {
                r.key: r for r in s.scalars(select(TrialRow).where(TrialRow.sweep_id == sweep_id))
            }
            for t in trials:
                row = existing.get(t.key)
                if row is None:
                    s.add(
                        TrialRow(
                            sweep_id=sweep_id,
                            key=t.key,
                            name=t.name,
                            position=t.position,
                            config=t.config,
                            varied=t.varied,
                            status="pending",
                            attempts=0,
                        )
                    )
                else:
                    row.name, row.position = t.name, t.position
            return {
                t.key: existing[t.key].status if t.key in existing else "pending" for t in trials
            }

    def mark_running(self, sweep: str, key: str, host: str | None, node_id: str | None) -> int:
        """Start a new attempt; returns its number. The series so far is kept: an attempt that
        resumes from a checkpoint continues it (see `record_metrics`)."""
        with self._session() as s:
            row = self._trial(s, sweep, key)
            row.status, row.attempts = "running", row.attempts + 1
            row.host, row.node_id, row.started_at, row.ended_at = host, node_id, utcnow(), None
            row.error, row.final_metrics = None, None
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
        with self._session() as s:
            row = self._trial(s, sweep, key)
            row.host, row.node_id, row.resumed_from_step = host, node_id, resumed_from_step

    def trial(self, sweep: str, key: str) -> TrialView:
        with self._session() as s:
            return _trial_view(self._trial(s, sweep, key))

    def metrics_after(self, sweep: str, key: str, after_step: int) -> list[tuple[int, str, float]]:
        """(step, name, value) of every stored value past `after_step`, in step order."""
        with self._session() as s:
            row = self._trial(s, sweep, key)
            q = (
                select(MetricRow.step, MetricRow.name, MetricRow.value)
                .where(MetricRow.trial_id == row.id, MetricRow.step > after_step)
                .order_by(MetricRow.step, MetricRow.name)
            )
            return [(int(st), str(n), float(v)) for st, n, v in s.execute(q)]

    def set_mlflow_step(self, sweep: str, key: str, step: int) -> None:
        with self._session() as s:
            self._trial(s, sweep, key).mlflow_last_step = step

    def set_checkpoint(self, sweep: str, key: str, path: str) -> None:
        with self._session() as s:
            self._trial(s, sweep, key).checkpoint_path = path

    def set_trial_run_id(self, sweep: str, key: str, run_id: str) -> None:
        with self._session() as s:
            self._trial(s, sweep, key).mlflow_run_id = run_id

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
        with self._session() as s:
            row = self._trial(s, sweep, key)
            stale = MetricRow.step >= step if first_of_attempt else MetricRow.step == step
            s.execute(delete(MetricRow).where(MetricRow.trial_id == row.id, stale))
            s.add_all(
                MetricRow(trial_id=row.id, step=step, name=n, value=v)
                for n, v in metrics.items()
                if math.isfinite(v)
            )
            row.last_step = step

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
        with self._session() as s:
            row = self._trial(s, sweep, key)
            row.status, row.ended_at, row.error = status, utcnow(), error
            if metrics is not None:
                row.final_metrics = metrics

    def stop_unfinished(self, sweep: str, keys: Sequence[str]) -> list[str]:
        """Mark the given trials that are still running as stopped; returns their keys."""
        with self._session() as s:
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

    def trials(self, sweep: str) -> list[TrialView]:
        """Every trial of the sweep in plan order. Reads plain columns rather than ORM objects:
        a sweep of 10,000 trials is read twice as fast that way."""
        with self._session() as s:
            sweep_id = self._sweep_id(s, sweep)
            q = (
                select(*_VIEW_COLUMNS)
                .where(TrialRow.sweep_id == sweep_id)
                .order_by(TrialRow.position)
            )
            return [_view_of_columns(tuple(r)) for r in s.execute(q)]

    def metric_series(self, sweep: str, key: str, name: str) -> list[tuple[int, float]]:
        with self._session() as s:
            row = self._trial(s, sweep, key)
            q = (
                select(MetricRow.step, MetricRow.value)
                .where(MetricRow.trial_id == row.id, MetricRow.name == name)
                .order_by(MetricRow.step)
            )
            return [(int(step), float(value)) for step, value in s.execute(q)]

    def count_metric_rows(self, sweep: str) -> int:
        with self._session() as s:
            q = (
                select(func.count(MetricRow.id))
                .join(TrialRow, MetricRow.trial_id == TrialRow.id)
                .where(TrialRow.sweep_id == self._sweep_id(s, sweep))
            )
            return int(s.scalar(q) or 0)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _sweep_id(s: Session, sweep: str) -> int:
        sweep_id = s.scalar(select(SweepRow.id).where(SweepRow.name == sweep))
        if sweep_id is None:
            raise InputError(f"no sweep named {sweep!r} in the results store")
        return sweep_id

    def _trial(self, s: Session, sweep: str, key: str) -> TrialRow:
        sweep_id = self._sweep_id(s, sweep)
        return s.scalars(
            select(TrialRow).where(TrialRow.sweep_id == sweep_id, TrialRow.key == key)
        ).one()


def mask_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _make_engine(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise InputError(f"results store URL {mask_url(url)!r} is not usable: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything here is written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (`orchestrator results`) run while the sweep writes; the busy timeout
    # makes a second writer wait instead of failing at once. In WAL mode `synchronous=NORMAL`
    # syncs the log at checkpoints instead of at every commit (the recorder commits a few
    # times per result): a killed driver loses nothing, a power cut at most the last commits,
    # which a resumed sweep records again, and the file stays consistent either way.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sweep_view(row: SweepRow) -> SweepView:
    return SweepView(
        name=row.name,
        metric_name=row.metric_name,
        metric_mode=row.metric_mode,
        mlflow_experiment_id=row.mlflow_experiment_id,
        mlflow_run_id=row.mlflow_run_id,
        created_at=row.created_at,
    )


# TrialView's fields in order, as columns of the trials table (its metrics are final_metrics).
_VIEW_COLUMNS = [
    getattr(TrialRow, "final_metrics" if f.name == "metrics" else f.name) for f in fields(TrialView)
]
_VIEW_FIELDS = [f.name for f in fields(TrialView)]


def _view_of_columns(values: tuple[Any, ...]) -> TrialView:
    data = dict(zip(_VIEW_FIELDS, values, strict=True))
    data["metrics"] = dict(data["metrics"] or {})
    return TrialView(**data)


def _trial_view(row: TrialRow) -> TrialView:
    return TrialView(
        key=row.key,
        name=row.name,
        status=row.status,
        attempts=row.attempts,
        config=row.config,
        varied=row.varied,
        metrics=dict(row.final_metrics or {}),
        error=row.error,
        host=row.host,
        node_id=row.node_id,
        mlflow_run_id=row.mlflow_run_id,
        last_step=row.last_step,
        resumed_from_step=row.resumed_from_step,
        mlflow_last_step=row.mlflow_last_step,
        checkpoint_path=row.checkpoint_path,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )
