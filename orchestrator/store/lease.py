"""The sweep lease: one driver at a time per sweep, fenced.

A row per sweep names the holder process; a heartbeat from a thread of the driver keeps it
fresh; a lease whose heartbeat is stale by the database's clock, or whose holder process on the
same host is gone, is taken over. Every acquisition increments the row's `epoch` in the same
statement that takes it, and a release only marks the row released, so the epoch never goes
backwards. A driver's writes go through `guard`: a conditional UPDATE of the lease row on
(holder, epoch), the first statement of the write's own transaction, so a write is either
committed before a takeover or refused after it with `LeaseLostError`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, DateTime, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from orchestrator.errors import LeaseLostError, ServiceError, SweepBusyError
from orchestrator.settings import positive_setting
from orchestrator.store.models import LeaseRow

Sessions = Callable[[], AbstractContextManager[Session]]

TIMEOUT_ENV = "GAPSWEEP_LEASE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 120.0


class db_now(FunctionElement[datetime]):
    """The database's clock, so that no two drivers' clocks are compared: CURRENT_TIMESTAMP,
    and on SQLite the same in UTC with milliseconds (its CURRENT_TIMESTAMP has whole seconds)."""

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(db_now)
def _db_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "STRFTIME('%Y-%m-%d %H:%M:%f', 'now')"


@dataclass(frozen=True)
class Holder:
    """One driver process, as a lease records it."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Holder:
        return cls(id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())


class Fence:
    """One acquisition of a sweep's lease: what every write of its driver is checked against.
    `lost` is set (from any thread) once the lease is found to belong to another driver."""

    def __init__(self, sweep: str, holder: Holder, epoch: int) -> None:
        self.sweep, self.holder, self.epoch = sweep, holder, epoch
        self.lost: LeaseLostError | None = None
        # Set by the heartbeat thread once `orchestrator cancel` asked: who asked, and when.
        self.cancelled_by: str | None = None


@dataclass(frozen=True)
class Driver:
    """The live holder of a sweep's lease, as `orchestrator sweeps` shows it."""

    sweep: str
    host: str
    pid: int
    since: datetime
    heartbeat_age_s: float
    cancel_requested_by: str | None
    holder: str = ""  # the lease's holder id and epoch: a cancel reaches this driver alone
    epoch: int = 0


def timeout_s() -> float:
    """How long a lease without a heartbeat stays its holder's: GAPSWEEP_LEASE_TIMEOUT_S."""
    return positive_setting(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def heartbeat_every_s(stale_after_s: float) -> float:
    """A few heartbeats fit into the timeout, at most one every 10 s."""
    return min(10.0, stale_after_s / 4)


def acquire(sessions: Sessions, sweep: str, holder: Holder, stale_after_s: float) -> Fence:
    """Become the one driver of `sweep`, or raise SweepBusyError naming who is."""
    try:
        with sessions() as s:
            s.execute(insert(LeaseRow).values(sweep_name=sweep, epoch=1, **_holder_columns(holder)))
        return Fence(sweep, holder, 1)
    except IntegrityError:
        pass
    with sessions() as s:
        found = s.execute(select(LeaseRow, db_now()).where(LeaseRow.sweep_name == sweep)).first()
        if found is None:  # cannot happen (rows are never deleted), but try from the start
            return acquire(sessions, sweep, holder, stale_after_s)
        current, now = found
        epoch = current.epoch  # the UPDATE below refreshes `current` in the session
        if current.holder == holder.id and current.released_at is None:
            return Fence(sweep, holder, epoch)  # ours: a retried call whose commit went through
        if current.released_at is None:
            _refuse_if_alive(current, sweep, holder, _age_s(current, now), stale_after_s)
        taken = cast(
            CursorResult[Any],
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.sweep_name == sweep, LeaseRow.epoch == epoch)
                .values(epoch=LeaseRow.epoch + 1, released_at=None, **_holder_columns(holder))
                .values(cancel_requested_at=None, cancel_requested_by=None)
            ),
        )
        if taken.rowcount != 1:  # another driver took it over first
            raise SweepBusyError(f"sweep {sweep!r} was just taken over by another driver")
        return Fence(sweep, holder, epoch + 1)


def guard(s: Session, fence: Fence) -> None:
    """Refuse the write of session `s` unless the lease is still `fence`'s. The conditional
    UPDATE locks the lease row (PostgreSQL) or takes the write lock (SQLite) until `s` commits,
    so no takeover slips in between the check and the write."""
    if fence.lost is not None:
        raise fence.lost
    if not _touch(s, fence, {"epoch": LeaseRow.epoch}):
        raise _lost(s, fence)


def heartbeat(sessions: Sessions, fence: Fence) -> None:
    """Refresh the lease by the database's clock; LeaseLostError when it is no longer ours."""
    if fence.lost is not None:
        raise fence.lost
    with sessions() as s:
        if not _touch(s, fence, {"heartbeat_at": db_now()}):
            raise _lost(s, fence)


def release(sessions: Sessions, fence: Fence) -> None:
    """Mark the lease released, when it is still ours (a lost one is left to its new holder)."""
    with sessions() as s:
        _touch(s, fence, {"released_at": db_now()})


class Drivers:
    """`store.drivers`: the live drivers of the store's sweeps, and cancelling one."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def live(self, stale_after_s: float | None = None) -> list[Driver]:
        """Every sweep's live driver: a lease not released whose heartbeat is fresh by the
        database's clock (GAPSWEEP_LEASE_TIMEOUT_S), and whose holder, when on this host, is
        still running."""
        stale = timeout_s() if stale_after_s is None else stale_after_s
        here = socket.gethostname()
        with self._sessions() as s:
            rows = s.execute(select(LeaseRow, db_now()).where(LeaseRow.released_at.is_(None)))
            found = [(row, _age_s(row, now)) for row, now in rows.all()]
        return [
            Driver(row.sweep_name, row.host, row.pid, _aware(row.acquired_at), age,
                   row.cancel_requested_by, row.holder, row.epoch)
            for row, age in found
            if age < stale and not (row.host == here and not _pid_alive(row.pid))
        ]  # fmt: skip

    def cancel(self, sweep: str, by: str) -> list[Driver]:
        """Ask the live driver of `sweep` (and of its stages, `sweep.<stage>`) to stop its
        trials, as Ctrl-C would; its heartbeat thread reads the request within CANCEL_POLL_S.
        Returns the drivers asked: none when no driver is live."""
        asked = [d for d in self.live() if d.sweep == sweep or d.sweep.startswith(f"{sweep}.")]
        with self._sessions() as s:
            for driver in asked:
                s.execute(
                    update(LeaseRow)
                    .where(
                        LeaseRow.sweep_name == driver.sweep,
                        LeaseRow.holder == driver.holder,
                        LeaseRow.epoch == driver.epoch,
                        LeaseRow.released_at.is_(None),
                    )
                    .values(cancel_requested_at=db_now(), cancel_requested_by=by)
                )
        return asked


def watch_cancel(sessions: Sessions, fence: Fence) -> None:
    """Set `fence.cancelled_by` (who asked, and when) once `orchestrator cancel` asked to stop
    the sweep `fence` holds."""
    if fence.cancelled_by is not None:
        return
    with sessions() as s:
        found = s.execute(
            select(LeaseRow.cancel_requested_by, LeaseRow.cancel_requested_at).where(
                LeaseRow.sweep_name == fence.sweep,
                LeaseRow.holder == fence.holder.id,
                LeaseRow.epoch == fence.epoch,
            )
        ).first()
    if found is not None and found[1] is not None:
        fence.cancelled_by = f"{found[0]} at {_aware(found[1]).strftime('%H:%M:%S UTC')}"


# How often a driver looks for a cancel request: `orchestrator cancel` takes effect within it.
CANCEL_POLL_S = 1.0


class HeartbeatThread(threading.Thread):
    """Beats for the whole life of a lease, whatever the main thread is doing, and looks for a
    cancel request in between. A transient store failure is tried again at the next beat; a
    lost lease ends the thread (the fence says so to every later write)."""

    def __init__(
        self, beat: Callable[[], None], stale_after_s: float, sessions: Sessions, fence: Fence
    ) -> None:
        super().__init__(name="gapsweep-lease-heartbeat", daemon=True)
        self.beat, self.every_s = beat, heartbeat_every_s(stale_after_s)
        self.sessions, self.fence = sessions, fence
        self.stopping = threading.Event()

    def run(self) -> None:
        poll = min(self.every_s, CANCEL_POLL_S)
        last_beat = time.monotonic()
        while not self.stopping.wait(poll):
            try:
                watch_cancel(self.sessions, self.fence)
                if time.monotonic() - last_beat >= self.every_s:  # a slow query delays no beat
                    last_beat = time.monotonic()
                    self.beat()
            except LeaseLostError:
                return
            except ServiceError:
                continue

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def _touch(s: Session, fence: Fence, values: dict[str, Any]) -> bool:
    touched = cast(
        CursorResult[Any],
        s.execute(
            update(LeaseRow)
            .where(
                LeaseRow.sweep_name == fence.sweep,
                LeaseRow.holder == fence.holder.id,
                LeaseRow.epoch == fence.epoch,
                LeaseRow.released_at.is_(None),
            )
            .values(values)
        ),
    )
    return touched.rowcount == 1


def _lost(s: Session, fence: Fence) -> LeaseLostError:
    """The error for a lease found not to be ours any more, remembered by the fence."""
    now = s.get(LeaseRow, fence.sweep, populate_existing=True)
    if now is None or now.epoch == fence.epoch:
        what = f"the lease of sweep {fence.sweep!r} was released"
    else:
        when = _aware(now.acquired_at).strftime("%Y-%m-%d %H:%M:%S UTC")
        what = f"sweep {fence.sweep!r} was taken over by process {now.pid} on {now.host} at {when}"
    fence.lost = LeaseLostError(
        f"{what} (lease epoch {fence.epoch} was this driver's); this driver wrote nothing "
        "after that"
    )
    return fence.lost


def _holder_columns(holder: Holder) -> dict[str, Any]:
    return {
        "holder": holder.id,
        "host": holder.host,
        "pid": holder.pid,
        "acquired_at": db_now(),
        "heartbeat_at": db_now(),
    }


def _refuse_if_alive(
    current: LeaseRow, sweep: str, holder: Holder, age: float, stale_after_s: float
) -> None:
    dead = current.host == holder.host and not _pid_alive(current.pid)
    if age < stale_after_s and not dead:
        raise SweepBusyError(
            f"sweep {sweep!r} is already being run by process {current.pid} on "
            f"{current.host} (last heartbeat {age:.0f} s ago); wait for it to finish, "
            f"or stop it first — a lease left by a killed driver expires after "
            f"{stale_after_s:.0f} s"
        )


def _age_s(current: LeaseRow, now: datetime) -> float:
    return (_aware(now) - _aware(current.heartbeat_at)).total_seconds()


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
