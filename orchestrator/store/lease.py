"""The sweep lease: one driver at a time per sweep. A row per sweep names the holder process;
its heartbeat keeps it; a lease whose heartbeat is stale, or whose holder process on the same
host is gone, is taken over (its driver died without releasing it)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.errors import SweepBusyError
from orchestrator.store.models import LeaseRow, utcnow

Sessions = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class Holder:
    """One driver process, as a lease records it."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Holder:
        return cls(id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())


def acquire(sessions: Sessions, sweep: str, holder: Holder, stale_after_s: float) -> None:
    """Become the one driver of `sweep`, or raise SweepBusyError naming who is."""
    now = utcnow()
    try:
        with sessions() as s:
            s.add(LeaseRow(sweep_name=sweep, **_holder_columns(holder, now)))
        return
    except IntegrityError:
        pass
    with sessions() as s:
        current = s.get(LeaseRow, sweep)
        if current is None:  # released in between: try once more from the start
            return acquire(sessions, sweep, holder, stale_after_s)
        _refuse_if_alive(current, sweep, holder, now, stale_after_s)
        taken = cast(
            CursorResult[Any],
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.sweep_name == sweep, LeaseRow.holder == current.holder)
                .values(**_holder_columns(holder, now))
            ),
        )
        if taken.rowcount != 1:  # another driver took it over first
            raise SweepBusyError(f"sweep {sweep!r} was just taken over by another driver")
    return None


def heartbeat(sessions: Sessions, sweep: str, holder: Holder) -> None:
    with sessions() as s:
        s.execute(
            update(LeaseRow)
            .where(LeaseRow.sweep_name == sweep, LeaseRow.holder == holder.id)
            .values(heartbeat_at=utcnow())
        )


def release(sessions: Sessions, sweep: str, holder: Holder) -> None:
    with sessions() as s:
        s.execute(
            delete(LeaseRow).where(LeaseRow.sweep_name == sweep, LeaseRow.holder == holder.id)
        )


def _holder_columns(holder: Holder, now: datetime) -> dict[str, Any]:
    return {
        "holder": holder.id,
        "host": holder.host,
        "pid": holder.pid,
        "acquired_at": now,
        "heartbeat_at": now,
    }


def _refuse_if_alive(
    current: LeaseRow, sweep: str, holder: Holder, now: datetime, stale_after_s: float
) -> None:
    age = (now - _aware(current.heartbeat_at)).total_seconds()
    dead = current.host == holder.host and not _pid_alive(current.pid)
    if age < stale_after_s and not dead:
        raise SweepBusyError(
            f"sweep {sweep!r} is already being run by process {current.pid} on "
            f"{current.host} (last heartbeat {age:.0f} s ago); wait for it to finish, "
            f"or stop it first — a lease left by a killed driver expires after "
            f"{stale_after_s:.0f} s"
        )


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
